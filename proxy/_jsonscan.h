/* The strict JSON reading that the compiled scanners share (proxy/metering/_rowscan.c, proxy/budgets/_estscan.c):
   a cursor over one line of an immutable buffer, and functions that skip or read one JSON value by the grammar
   of RFC 8259, returning -1 at anything they cannot vouch for (the caller then leaves the line to Python).
   Each scanner is one translation unit that includes this once and calls `json_tables_init` when loaded. */

#ifndef VBP_JSONSCAN_H
#define VBP_JSONSCAN_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

enum {
    MAX_DEPTH = 64,
    MAX_DIGITS = 15,  /* < 10^15 per count, so sums of counts cannot overflow before a scanner's guard */
};

typedef const unsigned char *ptr;

/* 1 for the bytes that end a run of plain string content: the quote, the backslash, control characters. */
static unsigned char string_stop[256];
static unsigned char hex_value[256];  /* 0..15, or 16 for a non-hex byte */
static unsigned char simple_escape[256];  /* 1 for the byte after a `\\` of a one-character escape */

typedef struct {
    ptr p;
    ptr end;  /* where reading must stop: the end of the buffer */
    int depth;
} Cursor;

static inline void skip_ws(Cursor *c) {
    /* JSON whitespace but '\n', which ends the line (a valid row holds none before its last '}'). */
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r')) c->p++;
}

/* At the byte after a `\`: one escape. */
static int skip_escape(Cursor *c) {
    ptr p = c->p;
    if (p >= c->end) return -1;
    switch (*p) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
        c->p = p + 1;
        return 0;
    case 'u': break;
    default: return -1;
    }
    if (c->end - p < 5) return -1;
    unsigned int unit = 0;
    for (int i = 1; i <= 4; i++) {
        unsigned char nibble = hex_value[p[i]];
        if (nibble > 15) return -1;
        unit = unit << 4 | nibble;
    }
    p += 5;
    if (unit >= 0xDC00 && unit <= 0xDFFF) return -1;  /* a lone low surrogate */
    if (unit >= 0xD800 && unit <= 0xDBFF) {           /* a high surrogate must be followed by a low one */
        if (c->end - p < 6 || p[0] != '\\' || p[1] != 'u') return -1;
        unsigned int low = 0;
        for (int i = 2; i <= 5; i++) {
            unsigned char nibble = hex_value[p[i]];
            if (nibble > 15) return -1;
            low = low << 4 | nibble;
        }
        if (low < 0xDC00 || low > 0xDFFF) return -1;
        p += 6;
    }
    c->p = p;
    return 0;
}

#ifdef __SSE2__
typedef struct {
    uint64_t quotes, backslashes, controls;  /* one bit per byte of a 64-byte block */
} Stops;

static inline uint64_t mask_of(__m128i a, __m128i b, __m128i c, __m128i d) {
    return (uint64_t)(uint32_t)_mm_movemask_epi8(a) | (uint64_t)(uint32_t)_mm_movemask_epi8(b) << 16 |
           (uint64_t)(uint32_t)_mm_movemask_epi8(c) << 32 | (uint64_t)(uint32_t)_mm_movemask_epi8(d) << 48;
}

static inline __m128i controls_of(__m128i bytes) {
    return _mm_cmpeq_epi8(_mm_min_epu8(bytes, _mm_set1_epi8(0x1F)), bytes);  /* bytes <= 0x1F */
}

static inline Stops string_stops(ptr p) {
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\');
    __m128i a = _mm_loadu_si128((const __m128i *)p), b = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i c = _mm_loadu_si128((const __m128i *)(p + 32)), d = _mm_loadu_si128((const __m128i *)(p + 48));
    Stops stops;
    stops.quotes = mask_of(_mm_cmpeq_epi8(a, quote), _mm_cmpeq_epi8(b, quote), _mm_cmpeq_epi8(c, quote),
                           _mm_cmpeq_epi8(d, quote));
    stops.backslashes = mask_of(_mm_cmpeq_epi8(a, backslash), _mm_cmpeq_epi8(b, backslash),
                                _mm_cmpeq_epi8(c, backslash), _mm_cmpeq_epi8(d, backslash));
    __m128i ca = controls_of(a), cb = controls_of(b), cc = controls_of(c), cd = controls_of(d);
    /* a control character is rare in a string (it makes the row invalid): one test for the block, then the mask */
    stops.controls = _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(ca, cb), _mm_or_si128(cc, cd)))
                     ? mask_of(ca, cb, cc, cd) : 0;
    return stops;
}
#endif

/* At a '"': a whole string. `escaped` tells whether it held any escape.

   The string content of a line is most of its bytes, so this is the scanner's hot loop. Where SSE2 is there
   it takes 64 bytes at a time: when every backslash before the block's first unescaped quote stands alone
   (no `\\`) and escapes a one-character escape, the escaped bytes are simply the bytes after backslashes, and
   the string ends at the first quote that is not one of them, with no branch per escape. Any other block (a
   `\\`, a \u escape, an escape cut by the block's end, a control character) is taken stop by stop. */
static int skip_string(Cursor *c, int *escaped) {
    ptr p = c->p + 1;
    ptr end = c->end;
    *escaped = 0;
#ifdef __SSE2__
    if (end - p >= 16) {  /* most strings (keys, short values) end within 16 bytes, without an escape */
        const __m128i bytes = _mm_loadu_si128((const __m128i *)p);
        int stops = _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(bytes, _mm_set1_epi8('"')),
                                                               _mm_cmpeq_epi8(bytes, _mm_set1_epi8('\\'))),
                                                  controls_of(bytes)));
        if (stops) {
            int at = __builtin_ctz((unsigned)stops);
            if (p[at] == '"') {
                c->p = p + at + 1;
                return 0;
            }
        }
    }
    while (end - p >= 64) {
        Stops stops = string_stops(p);
        uint64_t after_backslash = stops.backslashes << 1;
        uint64_t quotes = stops.quotes & ~after_backslash;
        uint64_t inside = quotes ? (quotes & ((uint64_t)0 - quotes)) - 1 : ~(uint64_t)0;  /* before the first quote */
        uint64_t doubt = (stops.controls | (stops.backslashes & after_backslash)) & inside;
        if (!quotes) doubt |= stops.backslashes >> 63;
        uint64_t escapes = after_backslash & inside;
        if (escapes) {
            /* the first three escapes without a branch each (a variable trip count mispredicts), the rest by a loop */
            uint64_t second = escapes & (escapes - 1), third = second & (second - 1);
            doubt |= !(simple_escape[p[__builtin_ctzll(escapes)]] &
                       (simple_escape[p[__builtin_ctzll(second | (uint64_t)1 << 63)]] | (second == 0)) &
                       (simple_escape[p[__builtin_ctzll(third | (uint64_t)1 << 63)]] | (third == 0)));
            for (escapes = third & (third - 1); escapes && !doubt; escapes &= escapes - 1)
                doubt = !simple_escape[p[__builtin_ctzll(escapes)]];
        }
        if (!doubt) {
            *escaped |= (stops.backslashes & inside) != 0;
            if (quotes) {
                c->p = p + __builtin_ctzll(quotes) + 1;
                return 0;
            }
            p += 64;
            continue;
        }
        /* Stop by stop, up to the end of this block (or of the escape that crosses it). */
        uint64_t pending = stops.quotes | stops.backslashes | stops.controls;
        ptr next = p + 64;
        while (pending) {
            int at = __builtin_ctzll(pending);
            ptr stop = p + at;
            if (*stop == '"') {
                c->p = stop + 1;
                return 0;
            }
            if (*stop != '\\') return -1;  /* a raw control character */
            *escaped = 1;
            if (at < 63 && simple_escape[stop[1]]) {
                pending &= ~((uint64_t)3 << at);  /* the backslash and the byte it escapes */
                continue;
            }
            c->p = stop + 1;  /* a \u escape, an escape cut by the block's end, or a bad one */
            if (skip_escape(c) < 0) return -1;
            next = c->p;
            break;
        }
        p = next;
    }
#endif
    for (;;) {
        while (p < end && !string_stop[*p]) p++;
        if (p >= end) return -1;
        if (*p == '"') {
            c->p = p + 1;
            return 0;
        }
        if (*p != '\\') return -1;  /* a raw control character */
        *escaped = 1;
        c->p = p + 1;
        if (skip_escape(c) < 0) return -1;
        p = c->p;
    }
}

static inline int is_digit(unsigned char b) { return b >= '0' && b <= '9'; }

/* A number by the JSON grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int skip_number(Cursor *c) {
    ptr p = c->p, end = c->end;
    if (p < end && *p == '-') p++;
    if (p >= end || !is_digit(*p)) return -1;
    if (*p == '0') p++;
    else while (p < end && is_digit(*p)) p++;
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !is_digit(*p)) return -1;
        while (p < end && is_digit(*p)) p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || !is_digit(*p)) return -1;
        while (p < end && is_digit(*p)) p++;
    }
    c->p = p;
    return 0;
}

static int skip_literal(Cursor *c, const char *word, size_t size) {
    if ((size_t)(c->end - c->p) < size || memcmp(c->p, word, size) != 0) return -1;
    c->p += size;
    return 0;
}

static int skip_value(Cursor *c);

/* After a member's value: ',' (returns 1, at the next key) or the closing byte (returns 0, past it). */
static int next_member(Cursor *c, unsigned char close) {
    skip_ws(c);
    if (c->p >= c->end) return -1;
    if (*c->p == ',') {
        c->p++;
        skip_ws(c);
        return 1;
    }
    if (*c->p != close) return -1;
    c->p++;
    c->depth--;
    return 0;
}

/* At a container's `open` byte ('{' or '['), past it and the whitespace after: 1 when the container is empty
   (and then past its `close` too), 0 when members follow, -1 when it is not there or too deep. */
static int enter(Cursor *c, unsigned char open, unsigned char close) {
    if (c->p >= c->end || *c->p != open || ++c->depth > MAX_DEPTH) return -1;
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        c->depth--;
        return 1;
    }
    return 0;
}

static int skip_object(Cursor *c) {
    int escaped, more = enter(c, '{', '}');
    if (more != 0) return more > 0 ? 0 : -1;
    do {
        if (c->p >= c->end || *c->p != '"' || skip_string(c, &escaped) < 0) return -1;
        skip_ws(c);
        if (c->p >= c->end || *c->p != ':') return -1;
        c->p++;
        skip_ws(c);
        if (skip_value(c) < 0) return -1;
    } while ((more = next_member(c, '}')) == 1);
    return more;
}

static int skip_array(Cursor *c) {
    int more = enter(c, '[', ']');
    if (more != 0) return more > 0 ? 0 : -1;
    do {
        if (skip_value(c) < 0) return -1;
    } while ((more = next_member(c, ']')) == 1);
    return more;
}

static int skip_value(Cursor *c) {
    int escaped;
    if (c->p >= c->end) return -1;
    switch (*c->p) {
    case '{': return skip_object(c);
    case '[': return skip_array(c);
    case '"': return skip_string(c, &escaped);
    case 't': return skip_literal(c, "true", 4);
    case 'f': return skip_literal(c, "false", 5);
    case 'n': return skip_literal(c, "null", 4);
    default: return skip_number(c);
    }
}

/* At a '"': a key we may match, then the ':' and the whitespace after it. Keys with escapes are refused: they
   could spell a field we read. */
static int read_key(Cursor *c, ptr *key, Py_ssize_t *size) {
    int escaped;
    ptr start = c->p;
    if (c->p >= c->end || *c->p != '"' || skip_string(c, &escaped) < 0 || escaped) return -1;
    *key = start + 1;
    *size = c->p - start - 2;
    skip_ws(c);
    if (c->p >= c->end || *c->p != ':') return -1;
    c->p++;
    skip_ws(c);
    return 0;
}

#define KEY_IS(key, size, literal) ((size) == (Py_ssize_t)sizeof(literal) - 1 && memcmp((key), (literal), (size)) == 0)

/* A count: a plain digit string (no sign, fraction, exponent or null) of at most MAX_DIGITS digits. */
static inline int read_count(Cursor *c, uint64_t *out) {
    ptr p = c->p, end = c->end;
    uint64_t value = 0;
    int digits = 0;
    if (p >= end || !is_digit(*p)) return -1;
    if (*p == '0') {
        p++;
    } else {
        while (p < end && is_digit(*p)) {
            if (++digits > MAX_DIGITS) return -1;
            value = value * 10 + (uint64_t)(*p++ - '0');
        }
    }
    if (p < end && (*p == '.' || *p == 'e' || *p == 'E' || is_digit(*p))) return -1;
    *out = value;
    c->p = p;
    return 0;
}

/* A string of printable ASCII without escapes (modelVersion, modality). */
static inline int read_ascii(Cursor *c, ptr *text, Py_ssize_t *size) {
    ptr p = c->p, end = c->end;
    if (p >= end || *p != '"') return -1;
    ptr start = ++p;
    while (p < end && *p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\') p++;
    if (p >= end || *p != '"') return -1;
    *text = start;
    *size = p - start;
    c->p = p + 1;
    return 0;
}

/* Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF), as Python decodes it (and msgspec). */
static inline int utf8_valid(ptr p, ptr end) {
    while (p < end) {
        uint64_t word;
        while (end - p >= 8) {  /* runs of ASCII, 8 bytes at a time */
            memcpy(&word, p, 8);
            if (word & 0x8080808080808080ULL) break;
            p += 8;
        }
        if (p >= end) break;
        unsigned char b = *p;
        if (b < 0x80) {
            p++;
            continue;
        }
        int more;
        unsigned char low = 0x80, high = 0xBF;  /* the allowed range of the second byte */
        if (b >= 0xC2 && b <= 0xDF) more = 1;
        else if (b == 0xE0) more = 2, low = 0xA0;
        else if (b >= 0xE1 && b <= 0xEC) more = 2;
        else if (b == 0xED) more = 2, high = 0x9F;
        else if (b >= 0xEE && b <= 0xEF) more = 2;
        else if (b == 0xF0) more = 3, low = 0x90;
        else if (b >= 0xF1 && b <= 0xF3) more = 3;
        else if (b == 0xF4) more = 3, high = 0x8F;
        else return 0;
        if (end - p <= more || p[1] < low || p[1] > high) return 0;
        for (int i = 2; i <= more; i++)
            if (p[i] < 0x80 || p[i] > 0xBF) return 0;
        p += more + 1;
    }
    return 1;
}

static void json_tables_init(void) {
    for (int b = 0; b < 256; b++) {
        string_stop[b] = b == '"' || b == '\\' || b < 0x20;
        simple_escape[b] = b != 0 && strchr("\"\\/bfnrt", b) != NULL;
        hex_value[b] = b >= '0' && b <= '9' ? b - '0' : b >= 'a' && b <= 'f' ? b - 'a' + 10
                     : b >= 'A' && b <= 'F' ? b - 'A' + 10 : 16;
    }
}

#endif
