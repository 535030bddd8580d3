/* The Gemini usageMetadata reading that the compiled row readers share (proxy/metering/_rowscan.c,
   proxy/openai_door/_chatrows.c): the token counts of one response, by the rules of the Vertex usage reader
   (proxy/providers/vertex/usage.py), -1 for anything where the two could differ (Python then decides). */

#ifndef VBP_USAGESCAN_H
#define VBP_USAGESCAN_H

#include "_jsonscan.h"

static const uint64_t ROW_GUARD = (uint64_t)1 << 53;  /* a row's audio sum above this goes to Python */

/* A response's counts (0 when absent); the audio ones are the AUDIO entries of the two details lists. */
typedef struct {
    uint64_t prompt, cached, candidates, thoughts, tool_use, audio_prompt, audio_cached;
} TokenCounts;

/* promptTokensDetails / cacheTokensDetails: an array of objects with an optional string modality and an
   optional count tokenCount; `audio` gets the sum of the AUDIO entries' counts (as `usage.audio_tokens`). */
static int read_details(Cursor *c, uint64_t *audio) {
    *audio = 0;
    int more = enter(c, '[', ']');
    if (more != 0) return more > 0 ? 0 : -1;
    for (;;) {
        int empty = enter(c, '{', '}');
        if (empty < 0) return -1;
        if (!empty) {
            int seen_modality = 0, seen_count = 0, is_audio = 0;
            uint64_t count = 0;
            do {
                ptr key, text;
                Py_ssize_t size, text_size;
                if (read_key(c, &key, &size) < 0) return -1;
                if (KEY_IS(key, size, "modality")) {
                    if (seen_modality++ || read_ascii(c, &text, &text_size) < 0) return -1;
                    is_audio = KEY_IS(text, text_size, "AUDIO");
                } else if (KEY_IS(key, size, "tokenCount")) {
                    if (seen_count++ || read_count(c, &count) < 0) return -1;
                } else if (skip_value(c) < 0) {
                    return -1;
                }
            } while ((more = next_member(c, '}')) == 1);
            if (more < 0) return -1;
            if (is_audio) {
                *audio += count;
                if (*audio > ROW_GUARD) return -1;
            }
        }
        more = next_member(c, ']');
        if (more <= 0) return more;
    }
}

static int read_usage(Cursor *c, TokenCounts *counts) {
    int more = enter(c, '{', '}');
    if (more != 0) return more > 0 ? 0 : -1;
    unsigned int seen = 0;  /* one bit per field read: a repeated one is refused */
    do {
        ptr key;
        Py_ssize_t size;
        uint64_t *count = NULL, *audio = NULL;
        unsigned int bit = 0;
        if (read_key(c, &key, &size) < 0) return -1;
        if (KEY_IS(key, size, "promptTokenCount")) count = &counts->prompt, bit = 1;
        else if (KEY_IS(key, size, "cachedContentTokenCount")) count = &counts->cached, bit = 2;
        else if (KEY_IS(key, size, "candidatesTokenCount")) count = &counts->candidates, bit = 4;
        else if (KEY_IS(key, size, "thoughtsTokenCount")) count = &counts->thoughts, bit = 8;
        else if (KEY_IS(key, size, "toolUsePromptTokenCount")) count = &counts->tool_use, bit = 16;
        else if (KEY_IS(key, size, "promptTokensDetails")) audio = &counts->audio_prompt, bit = 32;
        else if (KEY_IS(key, size, "cacheTokensDetails")) audio = &counts->audio_cached, bit = 64;
        if (bit) {
            if (seen & bit) return -1;
            seen |= bit;
        }
        if (count != NULL) {
            if (read_count(c, count) < 0) return -1;
        } else if (audio != NULL) {
            if (read_details(c, audio) < 0) return -1;
        } else if (skip_value(c) < 0) {
            return -1;
        }
    } while ((more = next_member(c, '}')) == 1);
    return more;
}

#endif
