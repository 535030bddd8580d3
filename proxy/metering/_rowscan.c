/* The plain-row accelerator of the Vertex row reader (proxy/providers/vertex/scanner.py calls it; this is its contract).

   `scan_gemini(buf, pos, above)` reads the lines of `buf` from `pos` and claims every line that is, beyond
   doubt, a succeeded Gemini row: one strictly valid JSON object whose single top-level `response` carries a
   `usageMetadata` of plain non-negative integer counts; or a failed row: no response, no predictions, and a
   non-empty ASCII `status` (it counts those). Per pricing tier (the row's prompt above `above` or
   not) it sums the rows, their token counts and the units they bill, by the rules of `cost.row_units`
   (audio shares clamped the same way). It stops at the first line it cannot vouch for and returns where that
   line starts; the Python row parser (proxy/metering/usage.py) then decides that line, so it stays the one
   definition of a row's meaning, and the tests hold this code to it line for line.

   Why "beyond doubt" is narrower than JSON: this code only has to agree with the Python parser on the lines
   it claims, so anything where the two could differ is left to Python rather than imitated here: escapes in
   the keys we match or in the strings we read, duplicate keys among them, nulls, numbers that are not plain
   digit strings of at most 15 digits, non-ASCII in modelVersion or modality, nesting deeper than 64, and
   lines that are not exactly `{...}` then LF or CRLF. Everything else on the line is still checked as JSON
   (the grammar of RFC 8259; UTF-8 is not validated, as msgspec does not either), so a claimed line is one the
   Python parser would accept too.

   The scan runs without the GIL: the buffer is an immutable bytes object held for the call. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

enum {
    MAX_DEPTH = 64,
    MAX_DIGITS = 15,    /* < 10^15 per count, so a run's sums cannot overflow before the guard below */
    MAX_VERSIONS = 16,  /* distinct modelVersions per call; the 17th ends the call (Python continues) */
    /* per tier: rows; the tokens prompt, cached, candidates, thoughts, tool-use prompt, audio prompt, audio
       cached (JobTotals' order); the units billed as input, audio input, cached input, cached audio input,
       output (cost.UNIT_RATES' order) */
    SUMS = 13,
};
static const uint64_t SUM_GUARD = (uint64_t)1 << 62;  /* end the call once a sum passes this */
static const uint64_t ROW_GUARD = (uint64_t)1 << 53;  /* a row's audio sum above this goes to Python */

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

typedef struct {
    uint64_t prompt, cached, candidates, thoughts, tool_use, audio_prompt, audio_cached;
    ptr version;  /* modelVersion's bytes in the buffer, or NULL when the response has none */
    Py_ssize_t version_len;
} Row;

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
    stops.controls = mask_of(controls_of(a), controls_of(b), controls_of(c), controls_of(d));
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
    while (end - p >= 64) {
        Stops stops = string_stops(p);
        uint64_t after_backslash = stops.backslashes << 1;
        uint64_t quotes = stops.quotes & ~after_backslash;
        uint64_t inside = quotes ? (quotes & ((uint64_t)0 - quotes)) - 1 : ~(uint64_t)0;  /* before the first quote */
        uint64_t doubt = (stops.controls | (stops.backslashes & after_backslash)) & inside;
        if (!quotes) doubt |= stops.backslashes >> 63;
        for (uint64_t escapes = after_backslash & inside; escapes && !doubt; escapes &= escapes - 1)
            doubt = !simple_escape[p[__builtin_ctzll(escapes)]];
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
static int read_count(Cursor *c, uint64_t *out) {
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
static int read_ascii(Cursor *c, ptr *text, Py_ssize_t *size) {
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

static int read_usage(Cursor *c, Row *row) {
    int more = enter(c, '{', '}');
    if (more != 0) return more > 0 ? 0 : -1;
    unsigned int seen = 0;  /* one bit per field read: a repeated one is refused */
    do {
        ptr key;
        Py_ssize_t size;
        uint64_t *count = NULL, *audio = NULL;
        unsigned int bit = 0;
        if (read_key(c, &key, &size) < 0) return -1;
        if (KEY_IS(key, size, "promptTokenCount")) count = &row->prompt, bit = 1;
        else if (KEY_IS(key, size, "cachedContentTokenCount")) count = &row->cached, bit = 2;
        else if (KEY_IS(key, size, "candidatesTokenCount")) count = &row->candidates, bit = 4;
        else if (KEY_IS(key, size, "thoughtsTokenCount")) count = &row->thoughts, bit = 8;
        else if (KEY_IS(key, size, "toolUsePromptTokenCount")) count = &row->tool_use, bit = 16;
        else if (KEY_IS(key, size, "promptTokensDetails")) audio = &row->audio_prompt, bit = 32;
        else if (KEY_IS(key, size, "cacheTokensDetails")) audio = &row->audio_cached, bit = 64;
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

static int read_response(Cursor *c, Row *row) {
    int seen_version = 0, seen_usage = 0, more;
    if (enter(c, '{', '}') != 0) return -1;  /* not an object, or an empty one: no usageMetadata */
    do {
        ptr key;
        Py_ssize_t size;
        if (read_key(c, &key, &size) < 0) return -1;
        if (KEY_IS(key, size, "modelVersion")) {
            if (seen_version++ || read_ascii(c, &row->version, &row->version_len) < 0) return -1;
        } else if (KEY_IS(key, size, "usageMetadata")) {
            if (seen_usage++ || read_usage(c, row) < 0) return -1;
        } else if (skip_value(c) < 0) {
            return -1;
        }
    } while ((more = next_member(c, '}')) == 1);
    return more < 0 || !seen_usage ? -1 : 0;
}

enum { SUCCEEDED_ROW = 0, FAILED_ROW = 1 };

/* A status that makes a row without response `failed` in Python: a non-empty string (of ASCII, so that it
   decodes whatever its escapes; other text is left to Python, which checks its UTF-8). */
static int read_failed_status(Cursor *c, int *failed) {
    int escaped;
    ptr start = c->p;
    if (c->p >= c->end || *c->p != '"') return skip_value(c);  /* not a string: only a response may save it */
    if (skip_string(c, &escaped) < 0) return -1;
    for (ptr byte = start + 1; byte < c->p - 1; byte++)
        if (*byte >= 0x80) return 0;
    *failed = c->p - start > 2;
    return 0;
}

/* Where a row's top-level `request` and `instance` values are (the per-line export hashes one of them for the
   line's key): [start, end) of each value's JSON text, NULL when the row has none. */
typedef struct {
    ptr request, request_end, instance, instance_end;
} Echo;

/* At a member's value that `echo` wants: its span (a second one of the same key is refused: Python decides). */
static int read_echo(Cursor *c, ptr *start, ptr *stop) {
    if (*start != NULL) return -1;
    ptr at = c->p;
    if (skip_value(c) < 0) return -1;
    *start = at;
    *stop = c->p;
    return 0;
}

/* The line at p, in a buffer that ends at `end`, with `newline` set at its '\n': SUCCEEDED_ROW (with `row`
   filled) or FAILED_ROW (a non-empty status and neither response nor predictions) when it is such a row beyond
   doubt, -1 when Python must decide it. The line's end is not looked for first: a valid row is `{...}` then
   '\n' or "\r\n", and a '\n' met anywhere before its last '}' makes the line invalid here. With `echo`, the
   spans of its `request` and `instance` are kept too. */
static int read_row(ptr p, ptr end, Row *row, ptr *newline, Echo *echo) {
    Cursor c = {p, end, 0};
    int seen_response = 0, seen_status = 0, failed = 0, more;
    memset(row, 0, sizeof *row);
    if (echo != NULL) memset(echo, 0, sizeof *echo);
    if (enter(&c, '{', '}') != 0) return -1;  /* not an object, or an empty one */
    do {
        ptr key;
        Py_ssize_t size;
        if (read_key(&c, &key, &size) < 0) return -1;
        if (KEY_IS(key, size, "response")) {
            if (seen_response++ || read_response(&c, row) < 0) return -1;
        } else if (KEY_IS(key, size, "status")) {
            if (seen_status++ || read_failed_status(&c, &failed) < 0) return -1;
        } else if (KEY_IS(key, size, "predictions")) {
            return -1;  /* an embedding row */
        } else if (echo != NULL && KEY_IS(key, size, "request")) {
            if (read_echo(&c, &echo->request, &echo->request_end) < 0) return -1;
        } else if (echo != NULL && KEY_IS(key, size, "instance")) {
            if (read_echo(&c, &echo->instance, &echo->instance_end) < 0) return -1;
        } else if (skip_value(&c) < 0) {
            return -1;
        }
    } while ((more = next_member(&c, '}')) == 1);
    if (more < 0 || !(seen_response || failed)) return -1;
    if (c.p < end && *c.p == '\n') *newline = c.p;
    else if (end - c.p >= 2 && c.p[0] == '\r' && c.p[1] == '\n') *newline = c.p + 1;
    else return -1;
    return seen_response ? SUCCEEDED_ROW : FAILED_ROW;
}

/* The units a succeeded Gemini row bills (the rules, clamps included, of `cost.row_units`). */
static void row_units(const Row *row, uint64_t units[5]) {
    uint64_t cached = row->cached, audio_prompt = row->audio_prompt, audio_cached = row->audio_cached;
    uint64_t uncached = row->prompt > cached ? row->prompt - cached : 0;
    uint64_t other_input = row->tool_use;
    units[4] = row->candidates + row->thoughts;
    if (!audio_prompt && !audio_cached) {
        units[0] = uncached + other_input, units[1] = 0, units[2] = cached, units[3] = 0;
        return;
    }
    if (audio_cached > cached) audio_cached = cached;
    uint64_t audio_uncached = audio_prompt > audio_cached ? audio_prompt - audio_cached : 0;
    if (audio_uncached > uncached) audio_uncached = uncached;
    units[0] = uncached - audio_uncached + other_input;
    units[1] = audio_uncached;
    units[2] = cached - audio_cached;
    units[3] = audio_cached;
}

typedef struct {
    ptr text;
    Py_ssize_t size;
    Py_ssize_t rows;
} Version;

static PyObject *sums_tuple(const uint64_t *sums) {
    PyObject *tuple = PyTuple_New(SUMS);
    for (int i = 0; tuple != NULL && i < SUMS; i++) {
        PyObject *value = PyLong_FromUnsignedLongLong(sums[i]);
        if (value == NULL) Py_CLEAR(tuple);
        else PyTuple_SET_ITEM(tuple, i, value);
    }
    return tuple;
}

static PyObject *scan_gemini(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *data;
    Py_ssize_t pos;
    unsigned long long above;
    /* `bytes` only ("S"), never any buffer: the scan runs without the GIL, and a bytearray or a memoryview of
       one could be resized or changed by another thread while it reads. */
    if (!PyArg_ParseTuple(args, "SnK", &data, &pos, &above)) return NULL;
    Py_ssize_t size = PyBytes_GET_SIZE(data), claimed = 0, failed = 0;
    if (pos < 0 || pos > size) {
        PyErr_SetString(PyExc_ValueError, "pos is outside the buffer");
        return NULL;
    }
    ptr buf = (ptr)PyBytes_AS_STRING(data);
    uint64_t tiers[2][SUMS] = {{0}};
    Version versions[MAX_VERSIONS];
    int distinct = 0, last = -1;

    Py_BEGIN_ALLOW_THREADS
    for (;;) {
        ptr newline;
        Row row;
        int kind = read_row(buf + pos, buf + size, &row, &newline, NULL);
        if (kind < 0) break;
        if (kind == FAILED_ROW) {
            failed++;
            claimed++;
            pos = newline + 1 - buf;
            continue;
        }
        int index = -1;
        if (row.version != NULL) {
            if (last >= 0 && versions[last].size == row.version_len &&
                memcmp(versions[last].text, row.version, (size_t)row.version_len) == 0) {
                index = last;
            } else {
                for (int i = 0; i < distinct; i++) {
                    if (versions[i].size == row.version_len &&
                        memcmp(versions[i].text, row.version, (size_t)row.version_len) == 0) {
                        index = i;
                        break;
                    }
                }
                if (index < 0) {
                    if (distinct == MAX_VERSIONS) break;  /* Python takes this line and calls again */
                    index = distinct++;
                    versions[index] = (Version){row.version, row.version_len, 0};
                }
            }
            versions[index].rows++;
            last = index;
        }
        uint64_t *sums = tiers[row.prompt > above ? 1 : 0];
        uint64_t units[5];
        row_units(&row, units);
        sums[0] += 1;
        sums[1] += row.prompt;
        sums[2] += row.cached;
        sums[3] += row.candidates;
        sums[4] += row.thoughts;
        sums[5] += row.tool_use;
        sums[6] += row.audio_prompt;
        sums[7] += row.audio_cached;
        int full = 0;
        for (int i = 0; i < 5; i++) {
            sums[8 + i] += units[i];
            full |= sums[8 + i] > SUM_GUARD;
        }
        for (int i = 1; i < 8; i++) full |= sums[i] > SUM_GUARD;
        claimed++;
        pos = newline + 1 - buf;
        if (full) break;  /* every value added is below 2^54, so no sum has wrapped; Python takes them now */
    }
    Py_END_ALLOW_THREADS

    PyObject *found = PyList_New(distinct);
    for (int i = 0; found != NULL && i < distinct; i++) {
        /* printable ASCII, so this decode cannot fail on the text itself */
        PyObject *item = Py_BuildValue("(s#n)", (const char *)versions[i].text, versions[i].size, versions[i].rows);
        if (item == NULL) Py_CLEAR(found);
        else PyList_SET_ITEM(found, i, item);
    }
    PyObject *base = sums_tuple(tiers[0]), *long_context = sums_tuple(tiers[1]), *result = NULL;
    if (found != NULL && base != NULL && long_context != NULL)
        result = Py_BuildValue("(nnnOOO)", pos, claimed, failed, base, long_context, found);
    Py_XDECREF(found);
    Py_XDECREF(base);
    Py_XDECREF(long_context);
    return result;
}

/* The per-row mode (the per-line cost export): the same rows as `scan_gemini` claims, one record each instead
   of sums. A record is ROW_FIELDS int64s: the line's start and end (its newline, or the CR before it), the spans
   of its `request` and `instance` ([start, end), -1 when absent), its kind (0 succeeded, 1 failed), its seven
   token counts in JobTotals' order and the span of its modelVersion's text (-1 when absent). At most `limit`
   rows per call, so the records stay small. */
enum { ROW_FIELDS = 16 };

static PyObject *scan_rows(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *data;
    Py_ssize_t pos, limit;
    if (!PyArg_ParseTuple(args, "Snn", &data, &pos, &limit)) return NULL;  /* bytes only: see scan_gemini */
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    if (pos < 0 || pos > size) {
        PyErr_SetString(PyExc_ValueError, "pos is outside the buffer");
        return NULL;
    }
    if (limit < 1 || limit > PY_SSIZE_T_MAX / (Py_ssize_t)(ROW_FIELDS * sizeof(int64_t))) {
        PyErr_SetString(PyExc_ValueError, "limit is out of range");
        return NULL;
    }
    PyObject *records = PyBytes_FromStringAndSize(NULL, limit * ROW_FIELDS * (Py_ssize_t)sizeof(int64_t));
    if (records == NULL) return NULL;
    int64_t *out = (int64_t *)PyBytes_AS_STRING(records);
    ptr buf = (ptr)PyBytes_AS_STRING(data);
    Py_ssize_t count = 0;

    Py_BEGIN_ALLOW_THREADS
    while (count < limit) {
        ptr newline;
        Row row;
        Echo echo;
        int kind = read_row(buf + pos, buf + size, &row, &newline, &echo);
        if (kind < 0) break;
        int64_t *record = out + count * ROW_FIELDS;
        ptr line_end = newline > buf + pos && newline[-1] == '\r' ? newline - 1 : newline;
        record[0] = pos;
        record[1] = line_end - buf;
        record[2] = echo.request != NULL ? echo.request - buf : -1;
        record[3] = echo.request != NULL ? echo.request_end - buf : -1;
        record[4] = echo.instance != NULL ? echo.instance - buf : -1;
        record[5] = echo.instance != NULL ? echo.instance_end - buf : -1;
        record[6] = kind;
        /* counts have at most MAX_DIGITS digits, audio sums at most ROW_GUARD: all fit an int64 */
        record[7] = (int64_t)row.prompt;
        record[8] = (int64_t)row.cached;
        record[9] = (int64_t)row.candidates;
        record[10] = (int64_t)row.thoughts;
        record[11] = (int64_t)row.tool_use;
        record[12] = (int64_t)row.audio_prompt;
        record[13] = (int64_t)row.audio_cached;
        record[14] = row.version != NULL ? row.version - buf : -1;
        record[15] = row.version != NULL ? row.version - buf + row.version_len : -1;
        count++;
        pos = newline + 1 - buf;
    }
    Py_END_ALLOW_THREADS

    if (_PyBytes_Resize(&records, count * ROW_FIELDS * (Py_ssize_t)sizeof(int64_t)) < 0) return NULL;
    PyObject *result = Py_BuildValue("(nO)", pos, records);
    Py_DECREF(records);
    return result;
}

static PyMethodDef methods[] = {
    {"scan_gemini", scan_gemini, METH_VARARGS,
     "scan_gemini(buf, pos, above) -> (pos, rows, failed_rows, base_sums, long_context_sums, [(modelVersion, rows)])\n\n"
     "Claim the succeeded Gemini rows and the failed rows of `buf` from `pos`; stop at the first line Python must\n"
     "decide. `rows` counts both kinds; the sums are those of the succeeded rows."},
    {"scan_rows", scan_rows, METH_VARARGS,
     "scan_rows(buf, pos, limit) -> (pos, records)\n\n"
     "The rows scan_gemini would claim from `pos` (at most `limit`), one record of 16 native int64s each: line start\n"
     "and end, request span, instance span (-1 when absent), kind (0 succeeded, 1 failed), seven token counts,\n"
     "modelVersion span."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rowscan", "The plain-row accelerator of the metering scanner.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__rowscan(void) {
    for (int b = 0; b < 256; b++) {
        string_stop[b] = b == '"' || b == '\\' || b < 0x20;
        simple_escape[b] = b != 0 && strchr("\"\\/bfnrt", b) != NULL;
        hex_value[b] = b >= '0' && b <= '9' ? b - '0' : b >= 'a' && b <= 'f' ? b - 'a' + 10
                     : b >= 'A' && b <= 'F' ? b - 'A' + 10 : 16;
    }
    return PyModule_Create(&module);
}
