/* The plain-line accelerator of the budget estimate (proxy/budgets/estimate.py calls it; this is its contract).

   `scan_requests(buf, pos, stop, above, max_output)` reads the lines of `buf[pos:stop]` and claims every line
   that is, beyond doubt, a Gemini batch request of text: one strictly valid JSON object with a `request` object
   whose `contents` and system instruction hold parts of `text` only, and whose generation config's output cap,
   if any, is a plain count. Per tier (the line's input tokens above `above` or not) it sums the lines, their
   input tokens (by the rule of tokens.text_tokens, counted on the JSON text itself, escapes decoded) and their
   output bounds (the cap when above zero, at most `max_output`; else `max_output`), as LineEstimator._line
   does. It stops at the first line it cannot vouch for and returns where that line starts; Python then decides
   that line, so estimate.py stays the one definition of a line's meaning, and the tests hold this code to it.

   Left to Python, never imitated: media parts (inlineData, fileData, either spelling), a cachedContent (either
   spelling), an embedding instance's `content`, nulls and repeats of the fields read, numbers that are not
   plain digit strings of at most 15 digits, \u escapes of a lone surrogate in a text, text that is not valid
   UTF-8, escapes in keys, nesting deeper than 64, and lines that are not exactly `{...}` then LF or CRLF.
   Everything else on a line is still checked as JSON (proxy/_jsonscan.h), so a claimed line is one msgspec
   decodes too.

   The scan runs without the GIL: the buffer is an immutable bytes object held for the call. */

#include "../_jsonscan.h"

/* The classes of a decoded text's UTF-8 bytes, the rule of tokens.py: a run of word bytes is one token, every
   punctuation byte is one, spaces none. */
enum { SPACE = 0, WORD = 1, PUNCT = 2 };
static unsigned char text_class[256];

static int hex4(ptr p, unsigned int *unit) {
    unsigned int value = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char nibble = hex_value[p[i]];
        if (nibble > 15) return -1;
        value = value << 4 | nibble;
    }
    *unit = value;
    return 0;
}

#ifdef __SSE2__
/* One bit per byte of the 64 at p: the word bytes (ASCII letters, digits, '_', and every byte >= 0x80). */
static inline uint64_t word_bits(ptr p) {
    uint64_t bits = 0;
    for (int i = 0; i < 4; i++) {
        __m128i v = _mm_loadu_si128((const __m128i *)(p + 16 * i));
        __m128i high = _mm_cmplt_epi8(v, _mm_setzero_si128());  /* >= 0x80 (signed < 0) */
        __m128i digit = _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8('0' - 1)), _mm_cmplt_epi8(v, _mm_set1_epi8('9' + 1)));
        __m128i folded = _mm_or_si128(v, _mm_set1_epi8(0x20));  /* 'A'..'Z' -> 'a'..'z' */
        __m128i letter = _mm_and_si128(_mm_cmpgt_epi8(folded, _mm_set1_epi8('a' - 1)),
                                       _mm_cmplt_epi8(folded, _mm_set1_epi8('z' + 1)));
        __m128i underscore = _mm_cmpeq_epi8(v, _mm_set1_epi8('_'));
        __m128i word = _mm_or_si128(_mm_or_si128(high, digit), _mm_or_si128(letter, underscore));
        bits |= (uint64_t)(uint32_t)_mm_movemask_epi8(word) << (16 * i);
    }
    return bits;
}

/* One bit per byte of the 64 at p: the bytes >= 0x80. */
static inline uint64_t high_bits(ptr p) {
    uint64_t bits = 0;
    for (int i = 0; i < 4; i++)
        bits |= (uint64_t)(uint32_t)_mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i))) << (16 * i);
    return bits;
}

/* One bit per byte of the 64 at p: the spaces a string can hold unescaped (only ' ': the others are control
   characters, which a JSON string escapes). */
static inline uint64_t space_bits(ptr p) {
    uint64_t bits = 0;
    for (int i = 0; i < 4; i++) {
        __m128i v = _mm_loadu_si128((const __m128i *)(p + 16 * i));
        bits |= (uint64_t)(uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(' '))) << (16 * i);
    }
    return bits;
}

/* The 64-byte blocks of a text from p while they hold no quote, backslash or control character, their tokens
   added to *count (a word run that crosses blocks counted once, by *previous_word) and *non_ascii set if any byte
   is >= 0x80. Returns where the byte loop of count_text goes on: at the first stop, or before the last 63 bytes.
   Two equivalent versions: SSE2 (every x86-64) and AVX2, picked when the module loads (`use_simd`); the tests run
   each against the byte loop and the Python rule. */
typedef ptr (*TextBlocks)(ptr p, ptr end, uint64_t *count, unsigned int *previous_word, int *non_ascii);

static ptr text_blocks_sse2(ptr p, ptr end, uint64_t *count, unsigned int *previous_word, int *non_ascii) {
    uint64_t counted = *count, any_high = 0;
    unsigned int previous = *previous_word;
    while (end - p >= 64) {
        Stops stops = string_stops(p);
        uint64_t stop_bits = stops.quotes | stops.backslashes | stops.controls;
        int plain = stop_bits ? __builtin_ctzll(stop_bits) : 64;  /* the bytes before the first stop */
        if (plain == 0) break;
        uint64_t in_block = plain == 64 ? ~(uint64_t)0 : ((uint64_t)1 << plain) - 1;
        uint64_t words = word_bits(p) & in_block;
        uint64_t starts = words & ~(words << 1 | previous);
        uint64_t punctuation = ~words & ~space_bits(p) & in_block;
        counted += (uint64_t)__builtin_popcountll(starts) + (uint64_t)__builtin_popcountll(punctuation);
        any_high |= high_bits(p) & in_block;
        previous = (unsigned int)(words >> (plain - 1)) & 1;
        p += plain;
        if (plain < 64) break;  /* the stop is taken by the byte loop */
    }
    *count = counted;
    *previous_word = previous;
    *non_ascii |= any_high != 0;
    return p;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2_PATH 1

/* The masks of 32 bytes at p, or'ed into bit `shift` on: the stops (quote, backslash, bytes <= 0x1F), the word
   bytes (letters, digits, '_', bytes >= 0x80), the spaces (' ') and the bytes >= 0x80. One load, and each class
   in a few unsigned compares (x - lo <= hi - lo as min(x - lo, hi - lo) == x - lo), so the 64 bytes cost about a
   third of the SSE2 version's instructions. */
__attribute__((target("avx2")))
static inline void classes_avx2(ptr p, int shift, uint64_t *stops, uint64_t *words, uint64_t *spaces,
                                uint64_t *high) {
    __m256i v = _mm256_loadu_si256((const __m256i *)p);
    __m256i stop = _mm256_or_si256(
        _mm256_or_si256(_mm256_cmpeq_epi8(v, _mm256_set1_epi8('"')), _mm256_cmpeq_epi8(v, _mm256_set1_epi8('\\'))),
        _mm256_cmpeq_epi8(_mm256_min_epu8(v, _mm256_set1_epi8(0x1F)), v));
    __m256i digit = _mm256_sub_epi8(v, _mm256_set1_epi8('0'));
    digit = _mm256_cmpeq_epi8(_mm256_min_epu8(digit, _mm256_set1_epi8(9)), digit);
    __m256i letter = _mm256_sub_epi8(_mm256_or_si256(v, _mm256_set1_epi8(0x20)), _mm256_set1_epi8('a'));
    letter = _mm256_cmpeq_epi8(_mm256_min_epu8(letter, _mm256_set1_epi8(25)), letter);
    __m256i word = _mm256_or_si256(_mm256_or_si256(digit, letter), _mm256_cmpeq_epi8(v, _mm256_set1_epi8('_')));
    uint64_t top = (uint32_t)_mm256_movemask_epi8(v);  /* the sign bits: the bytes >= 0x80 */
    *stops |= (uint64_t)(uint32_t)_mm256_movemask_epi8(stop) << shift;
    *words |= ((uint64_t)(uint32_t)_mm256_movemask_epi8(word) | top) << shift;
    *spaces |= (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, _mm256_set1_epi8(' '))) << shift;
    *high |= top << shift;
}

__attribute__((target("avx2")))
static ptr text_blocks_avx2(ptr p, ptr end, uint64_t *count, unsigned int *previous_word, int *non_ascii) {
    uint64_t counted = *count, any_high = 0;
    unsigned int previous = *previous_word;
    while (end - p >= 64) {
        uint64_t stops = 0, words = 0, spaces = 0, high = 0;
        classes_avx2(p, 0, &stops, &words, &spaces, &high);
        classes_avx2(p + 32, 32, &stops, &words, &spaces, &high);
        int plain = stops ? __builtin_ctzll(stops) : 64;  /* the bytes before the first stop */
        if (plain == 0) break;
        uint64_t in_block = plain == 64 ? ~(uint64_t)0 : ((uint64_t)1 << plain) - 1;
        words &= in_block;
        uint64_t starts = words & ~(words << 1 | previous);
        uint64_t punctuation = ~words & ~spaces & in_block;
        counted += (uint64_t)__builtin_popcountll(starts) + (uint64_t)__builtin_popcountll(punctuation);
        any_high |= high & in_block;
        previous = (unsigned int)(words >> (plain - 1)) & 1;
        p += plain;
        if (plain < 64) break;  /* the stop is taken by the byte loop */
    }
    *count = counted;
    *previous_word = previous;
    *non_ascii |= any_high != 0;
    return p;
}
#endif

static TextBlocks text_blocks = text_blocks_sse2;
#endif  /* __SSE2__ */

/* At a '"': a text string, its tokens counted into *tokens (the rule of tokens.text_tokens on the decoded text).
   -1 when Python must decide it (a lone surrogate escape, invalid UTF-8, a raw control character, no end). */
static int count_text(Cursor *c, uint64_t *tokens) {
    ptr p = c->p + 1, end = c->end, start = p;
    uint64_t count = 0;
    unsigned int previous_word = 0;
    int non_ascii = 0;
    for (;;) {
#ifdef __SSE2__
        p = text_blocks(p, end, &count, &previous_word, &non_ascii);
#endif
        if (p >= end) return -1;
        unsigned char b = *p;
        unsigned int kind;
        if (!string_stop[b]) {
            kind = text_class[b];
            non_ascii |= b >= 0x80;
            p++;
        } else if (b == '"') {
            break;
        } else if (b != '\\' || end - p < 2) {
            return -1;  /* a raw control character, or a string cut by the buffer's end */
        } else {
            switch (p[1]) {
            case '"': case '\\': case '/': case 'b':
                kind = PUNCT;
                p += 2;
                break;
            case 'f': case 'n': case 'r': case 't':
                kind = SPACE;
                p += 2;
                break;
            case 'u': {
                unsigned int unit, low;
                if (end - p < 6 || hex4(p + 2, &unit) < 0) return -1;
                p += 6;
                if (unit >= 0xDC00 && unit <= 0xDFFF) return -1;  /* a lone low surrogate */
                if (unit >= 0xD800 && unit <= 0xDBFF) {           /* a pair makes one character above U+FFFF */
                    if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &low) < 0) return -1;
                    if (low < 0xDC00 || low > 0xDFFF) return -1;
                    p += 6;
                }
                kind = unit < 0x80 ? text_class[unit] : WORD;  /* above ASCII: UTF-8 bytes >= 0x80, word bytes */
                break;
            }
            default:
                return -1;
            }
        }
        unsigned int word = kind == WORD;
        count += word & ~previous_word;
        count += kind == PUNCT;
        previous_word = word;
    }
    if (non_ascii && !utf8_valid(start, p)) return -1;  /* escapes are ASCII: they cannot hide a bad sequence */
    c->p = p + 1;
    *tokens += count;
    return 0;
}

/* An array of parts: each an object whose only field read is a string `text` (media parts go to Python). */
static int read_parts(Cursor *c, uint64_t *tokens) {
    int more = enter(c, '[', ']');
    if (more != 0) return more > 0 ? 0 : -1;
    for (;;) {
        int empty = enter(c, '{', '}');
        if (empty < 0) return -1;
        if (!empty) {
            int seen_text = 0;
            do {
                ptr key;
                Py_ssize_t size;
                if (read_key(c, &key, &size) < 0) return -1;
                if (KEY_IS(key, size, "text")) {
                    if (seen_text++ || c->p >= c->end || *c->p != '"' || count_text(c, tokens) < 0) return -1;
                } else if (KEY_IS(key, size, "inlineData") || KEY_IS(key, size, "inline_data") ||
                           KEY_IS(key, size, "fileData") || KEY_IS(key, size, "file_data")) {
                    return -1;
                } else if (skip_value(c) < 0) {
                    return -1;
                }
            } while ((more = next_member(c, '}')) == 1);
            if (more < 0) return -1;
        }
        more = next_member(c, ']');
        if (more <= 0) return more;
    }
}

/* A content object (of `contents`, or a system instruction): the tokens of its `parts`. */
static int read_content(Cursor *c, uint64_t *tokens) {
    int seen_parts = 0, more = enter(c, '{', '}');
    if (more != 0) return more > 0 ? 0 : -1;
    do {
        ptr key;
        Py_ssize_t size;
        if (read_key(c, &key, &size) < 0) return -1;
        if (KEY_IS(key, size, "parts")) {
            if (seen_parts++ || read_parts(c, tokens) < 0) return -1;
        } else if (skip_value(c) < 0) {
            return -1;
        }
    } while ((more = next_member(c, '}')) == 1);
    return more;
}

static int read_contents(Cursor *c, uint64_t *tokens) {
    int more = enter(c, '[', ']');
    if (more != 0) return more > 0 ? 0 : -1;
    do {
        if (read_content(c, tokens) < 0) return -1;
    } while ((more = next_member(c, ']')) == 1);
    return more;
}

typedef struct {
    int has_cap;
    uint64_t cap;
} Cap;

/* A generation config: its output cap, `maxOutputTokens` before `max_output_tokens` (as estimate.py reads it). */
static int read_generation(Cursor *c, Cap *cap) {
    int seen_camel = 0, seen_snake = 0, more = enter(c, '{', '}');
    uint64_t camel = 0, snake = 0;
    cap->has_cap = 0;
    if (more != 0) return more > 0 ? 0 : -1;
    do {
        ptr key;
        Py_ssize_t size;
        if (read_key(c, &key, &size) < 0) return -1;
        if (KEY_IS(key, size, "maxOutputTokens")) {
            if (seen_camel++ || read_count(c, &camel) < 0) return -1;
        } else if (KEY_IS(key, size, "max_output_tokens")) {
            if (seen_snake++ || read_count(c, &snake) < 0) return -1;
        } else if (skip_value(c) < 0) {
            return -1;
        }
    } while ((more = next_member(c, '}')) == 1);
    if (more < 0) return -1;
    cap->has_cap = seen_camel || seen_snake;
    cap->cap = seen_camel ? camel : snake;
    return 0;
}

typedef struct {
    uint64_t tokens;
    Cap cap;
} Request;

/* The `request` object: the tokens of its contents and system instruction (`systemInstruction` before
   `system_instruction`) and its output cap (`generationConfig` before `generation_config`). */
static int read_request(Cursor *c, Request *request) {
    unsigned int seen = 0;  /* one bit per field read: a repeated one is refused */
    uint64_t system[2] = {0, 0};
    Cap caps[2] = {{0, 0}, {0, 0}};
    int more = enter(c, '{', '}');
    memset(request, 0, sizeof *request);
    if (more != 0) return more > 0 ? 0 : -1;
    do {
        ptr key;
        Py_ssize_t size;
        unsigned int bit = 0;
        if (read_key(c, &key, &size) < 0) return -1;
        if (KEY_IS(key, size, "contents")) bit = 1;
        else if (KEY_IS(key, size, "systemInstruction")) bit = 2;
        else if (KEY_IS(key, size, "system_instruction")) bit = 4;
        else if (KEY_IS(key, size, "generationConfig")) bit = 8;
        else if (KEY_IS(key, size, "generation_config")) bit = 16;
        else if (KEY_IS(key, size, "cachedContent") || KEY_IS(key, size, "cached_content")) return -1;
        if (seen & bit) return -1;
        seen |= bit;
        int status;
        switch (bit) {
        case 1: status = read_contents(c, &request->tokens); break;
        case 2: status = read_content(c, &system[0]); break;
        case 4: status = read_content(c, &system[1]); break;
        case 8: status = read_generation(c, &caps[0]); break;
        case 16: status = read_generation(c, &caps[1]); break;
        default: status = skip_value(c);
        }
        if (status < 0) return -1;
    } while ((more = next_member(c, '}')) == 1);
    if (more < 0) return -1;
    request->tokens += seen & 2 ? system[0] : system[1];
    request->cap = seen & 8 ? caps[0] : caps[1];
    return 0;
}

/* The line at p: 0 with `request` and `newline` set when it is a plain text request beyond doubt, else -1. */
static int read_line(ptr p, ptr end, Request *request, ptr *newline) {
    Cursor c = {p, end, 0};
    int seen_request = 0, more;
    if (enter(&c, '{', '}') != 0) return -1;  /* not an object, or an empty one (no request: malformed) */
    do {
        ptr key;
        Py_ssize_t size;
        if (read_key(&c, &key, &size) < 0) return -1;
        if (KEY_IS(key, size, "request")) {
            if (seen_request++ || read_request(&c, request) < 0) return -1;
        } else if (KEY_IS(key, size, "content")) {
            return -1;  /* an embedding instance */
        } else if (skip_value(&c) < 0) {
            return -1;
        }
    } while ((more = next_member(&c, '}')) == 1);
    if (more < 0 || !seen_request) return -1;
    if (c.p < end && *c.p == '\n') *newline = c.p;
    else if (end - c.p >= 2 && c.p[0] == '\r' && c.p[1] == '\n') *newline = c.p + 1;
    else return -1;
    return 0;
}

static PyObject *scan_requests(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *data;
    Py_ssize_t pos, stop;
    unsigned long long above, max_output;
    /* `bytes` only ("S"), never any buffer: the scan runs without the GIL (see _rowscan.c) */
    if (!PyArg_ParseTuple(args, "SnnKK", &data, &pos, &stop, &above, &max_output)) return NULL;
    if (stop < 0 || stop > PyBytes_GET_SIZE(data) || pos < 0 || pos > stop) {
        PyErr_SetString(PyExc_ValueError, "pos and stop must satisfy 0 <= pos <= stop <= len(buf)");
        return NULL;
    }
    if (max_output >= (1ULL << 40)) {
        PyErr_SetString(PyExc_ValueError, "max_output is out of range");
        return NULL;
    }
    ptr buf = (ptr)PyBytes_AS_STRING(data);
    /* per tier: lines, input tokens, output bound; each line adds at most its length in tokens and 2^40 of
       output, so no sum can wrap for any buffer that fits in memory */
    uint64_t tiers[2][3] = {{0}};

    Py_BEGIN_ALLOW_THREADS
    for (;;) {
        ptr newline;
        Request request;
        if (read_line(buf + pos, buf + stop, &request, &newline) < 0) break;
        uint64_t output = request.cap.has_cap && request.cap.cap > 0
                              ? (request.cap.cap < max_output ? request.cap.cap : max_output) : max_output;
        uint64_t *sums = tiers[request.tokens > above ? 1 : 0];
        sums[0] += 1;
        sums[1] += request.tokens;
        sums[2] += output;
        pos = newline + 1 - buf;
    }
    Py_END_ALLOW_THREADS

    return Py_BuildValue("(n(KKK)(KKK))", pos, (unsigned long long)tiers[0][0], (unsigned long long)tiers[0][1],
                         (unsigned long long)tiers[0][2], (unsigned long long)tiers[1][0],
                         (unsigned long long)tiers[1][1], (unsigned long long)tiers[1][2]);
}

/* The versions of the text blocks this machine can run, best first; the first is used from load. */
static PyObject *simd_paths(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
#ifdef HAVE_AVX2_PATH
    if (__builtin_cpu_supports("avx2")) return Py_BuildValue("(ss)", "avx2", "sse2");
#endif
#ifdef __SSE2__
    return Py_BuildValue("(s)", "sse2");
#else
    return PyTuple_New(0);
#endif
}

/* Use one of `simd_paths()` (the tests run every one). */
static PyObject *use_simd(PyObject *module, PyObject *args) {
    (void)module;
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
#ifdef HAVE_AVX2_PATH
    if (strcmp(name, "avx2") == 0 && __builtin_cpu_supports("avx2")) {
        text_blocks = text_blocks_avx2;
        Py_RETURN_NONE;
    }
#endif
#ifdef __SSE2__
    if (strcmp(name, "sse2") == 0) {
        text_blocks = text_blocks_sse2;
        Py_RETURN_NONE;
    }
#endif
    PyErr_Format(PyExc_ValueError, "no SIMD path %s on this machine", name);
    return NULL;
}

static PyMethodDef methods[] = {
    {"simd_paths", simd_paths, METH_NOARGS,
     "simd_paths() -> the versions of the text scan this machine can run, best first (the first is in use)."},
    {"use_simd", use_simd, METH_VARARGS, "use_simd(name): scan texts with that version of `simd_paths()`."},
    {"scan_requests", scan_requests, METH_VARARGS,
     "scan_requests(buf, pos, stop, above, max_output) -> (pos, (lines, tokens, output), (lines, tokens, output))\n\n"
     "Claim the plain text request lines of `buf[pos:stop]`; stop at the first line Python must decide. The sums\n"
     "are per tier: the lines whose input tokens are at most `above`, then those above it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_estscan", "The plain-line accelerator of the budget estimate.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__estscan(void) {
    json_tables_init();
    for (int b = 0; b < 256; b++) {
        int word = (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') || b == '_' ||
                   b >= 0x80;
        int space = b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == 0x0b || b == 0x0c ||
                    (b >= 0x1c && b <= 0x1f);
        text_class[b] = word ? WORD : space ? SPACE : PUNCT;
    }
#ifdef HAVE_AVX2_PATH
    if (__builtin_cpu_supports("avx2")) text_blocks = text_blocks_avx2;
#endif
    return PyModule_Create(&module);
}
