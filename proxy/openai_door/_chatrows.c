/* The compiled fast path of the OpenAI door's chat output conversion (proxy/openai_door/output_conversion.py calls
   it through `OutputLines`; this is its contract).

   `answer_rows(buf, pos, end, base, ids, ends, model_json, batch_id, output)` reads the rows of buf[pos:end] and
   answers every row that is, beyond doubt, a succeeded chat row of the common shape: one strictly valid JSON object
   (then LF or CRLF) with a `request` whose `labels` carry the line (`vbp_line`, 1..lines of the index) and a
   `response` of text candidates (no functionCall, no promptFeedback) with plain usage counts. For each it gives
   the row's line and, for the output file (`output`), the OpenAI output line `OutputLines.chat_answer` would
   write, byte for byte; for the error file, an empty answer. It stops at the first row it cannot vouch for and
   returns where that row starts: Python (`OutputLines.chat_answer`, the reference) decides that row, then calls
   again. The tests hold the two paths to the same bytes.

   "Beyond doubt" is narrower than what Python accepts, never wider: escaped keys, repeated keys we read, nulls
   where Python would read them, numbers that are not plain digit strings, strings that are not valid UTF-8, times
   other than `YYYY-MM-DDTHH:MM:SS[.digits](Z|+HH:MM|-HH:MM)` in 1970-2200, and rows without their label all go to
   Python. JSON string bodies are copied verbatim where msgspec would write the same bytes (no escapes, no control
   characters); otherwise they are re-encoded by msgspec's rules (short escapes for \b \t \n \f \r " \\, \u00XX for
   other control characters, everything else as UTF-8).

   The request ids are BLAKE2b digests (RFC 7693) of the batch id and the line, as `hashlib.blake2b(digest_size=16)`
   gives them. The reading runs without the GIL: every buffer is an immutable bytes object held for the call. */

#include "../_usagescan.h"

/* -- a growing output buffer ---------------------------------------------------------------------------------- */

typedef struct {
    char *data;
    size_t len, cap;
    int failed;  /* set once an allocation failed: every later write is dropped and the call ends with MemoryError */
} Out;

static int out_reserve(Out *o, size_t more) {
    if (o->failed) return -1;
    if (o->cap - o->len >= more) return 0;
    size_t cap = o->cap ? o->cap : 4096;
    while (cap - o->len < more) {
        if (cap > ((size_t)PY_SSIZE_T_MAX) / 2) return o->failed = 1, -1;
        cap *= 2;
    }
    char *data = PyMem_RawRealloc(o->data, cap);
    if (data == NULL) return o->failed = 1, -1;
    o->data = data;
    o->cap = cap;
    return 0;
}

static inline void put(Out *o, const void *bytes, size_t size) {
    if (size == 0 || out_reserve(o, size) < 0) return;  /* (memcpy must not see the NULL of an empty buffer) */
    memcpy(o->data + o->len, bytes, size);
    o->len += size;
}

#define PUT_LITERAL(o, literal) put((o), (literal), sizeof(literal) - 1)

/* The decimal digits of `value` at the end of digits[0..24), returning where they start: snprintf's "%llu" without
   its format parsing and locale machinery, which cost about a tenth of a row's time (seven numbers a row). */
static char *decimal(unsigned long long value, char digits[24]) {
    char *at = digits + 24;
    do {
        *--at = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    return at;
}

static void put_int(Out *o, long long value) {
    char digits[24];
    unsigned long long magnitude = (unsigned long long)value;
    if (value < 0) {
        PUT_LITERAL(o, "-");
        magnitude = (unsigned long long)(-(value + 1)) + 1;  /* (no overflow for LLONG_MIN) */
    }
    char *at = decimal(magnitude, digits);
    put(o, at, (size_t)(digits + 24 - at));
}

/* -- strings as msgspec writes them ------------------------------------------------------------------------- */

/* One code point (from a \u escape) as msgspec writes it. */
static void put_code_point(Out *o, unsigned int cp) {
    static const char hex[] = "0123456789abcdef";
    char bytes[6];
    size_t size = 0;
    switch (cp) {
    case '"': PUT_LITERAL(o, "\\\""); return;
    case '\\': PUT_LITERAL(o, "\\\\"); return;
    case '\b': PUT_LITERAL(o, "\\b"); return;
    case '\t': PUT_LITERAL(o, "\\t"); return;
    case '\n': PUT_LITERAL(o, "\\n"); return;
    case '\f': PUT_LITERAL(o, "\\f"); return;
    case '\r': PUT_LITERAL(o, "\\r"); return;
    default: break;
    }
    if (cp < 0x20) {
        char escape[6] = {'\\', 'u', '0', '0', hex[cp >> 4], hex[cp & 15]};
        put(o, escape, 6);
        return;
    }
    if (cp < 0x80) {
        bytes[size++] = (char)cp;
    } else if (cp < 0x800) {
        bytes[size++] = (char)(0xC0 | cp >> 6);
        bytes[size++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        bytes[size++] = (char)(0xE0 | cp >> 12);
        bytes[size++] = (char)(0x80 | (cp >> 6 & 0x3F));
        bytes[size++] = (char)(0x80 | (cp & 0x3F));
    } else {
        bytes[size++] = (char)(0xF0 | cp >> 18);
        bytes[size++] = (char)(0x80 | (cp >> 12 & 0x3F));
        bytes[size++] = (char)(0x80 | (cp >> 6 & 0x3F));
        bytes[size++] = (char)(0x80 | (cp & 0x3F));
    }
    put(o, bytes, size);
}

/* The length of the valid UTF-8 sequence at p (a byte >= 0x80), or 0: no overlong forms, no surrogates, at most
   U+10FFFF (what Python's strict UTF-8 decoder accepts). */
static size_t utf8_sequence(ptr p, ptr end) {
    unsigned char b = p[0];
    size_t size = b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xF0 && b <= 0xF4 ? 4 : 0;
    if (size == 0 || (size_t)(end - p) < size) return 0;
    for (size_t i = 1; i < size; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    if (b == 0xE0 && p[1] < 0xA0) return 0;   /* overlong */
    if (b == 0xED && p[1] >= 0xA0) return 0;  /* a surrogate */
    if (b == 0xF0 && p[1] < 0x90) return 0;   /* overlong */
    if (b == 0xF4 && p[1] >= 0x90) return 0;  /* above U+10FFFF */
    return size;
}

static unsigned int hex4(ptr p) {
    return (unsigned int)hex_value[p[0]] << 12 | (unsigned int)hex_value[p[1]] << 8 |
           (unsigned int)hex_value[p[2]] << 4 | hex_value[p[3]];
}

/* The body of a string, [p, end), as msgspec writes the str it decodes to. `json`: the body is a JSON string body
   that skip_string has checked (escapes well formed, surrogates paired, no raw control character); otherwise it is
   raw text (a custom_id of the index). -1 when it is not valid UTF-8. */
static int put_string_body(Out *o, ptr p, ptr end, int json) {
    while (p < end) {
        ptr run = p;
        /* 8 bytes at a time while they are all printable ASCII but the quote and the backslash */
        for (uint64_t word; end - p >= 8; p += 8) {
            memcpy(&word, p, 8);
            const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
            uint64_t quote = word ^ (ones * '"'), backslash = word ^ (ones * '\\');
            uint64_t stops = (word | ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash) |
                              ((word - ones * 0x20) & ~word)) & highs;  /* high bit, a zero (quote, \\) or < 0x20 */
            if (stops) break;
        }
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') p++;
        put(o, run, (size_t)(p - run));
        if (p >= end) break;
        if (*p >= 0x80) {
            size_t size = utf8_sequence(p, end);
            if (size == 0) return -1;
            put(o, p, size);
            p += size;
        } else if (!json || *p != '\\') {
            put_code_point(o, *p++);  /* raw text's quote, backslash or control character */
        } else {
            if (end - p < 2) return -1;
            unsigned char kind = p[1];
            if (kind != 'u') {
                static const char decoded[128] = {['"'] = '"', ['\\'] = '\\', ['/'] = '/', ['b'] = '\b',
                                                  ['f'] = '\f', ['n'] = '\n', ['r'] = '\r', ['t'] = '\t'};
                if (kind >= 128 || !decoded[kind]) return -1;
                put_code_point(o, (unsigned char)decoded[kind]);
                p += 2;
                continue;
            }
            if (end - p < 6) return -1;
            unsigned int cp = hex4(p + 2);
            p += 6;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u') return -1;
                unsigned int low = hex4(p + 2);
                if (low < 0xDC00 || low > 0xDFFF) return -1;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                p += 6;
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return -1;
            }
            put_code_point(o, cp);
        }
    }
    return 0;
}

/* A string value at c (a '"'): checked, and its span kept ([start, stop) including the quotes). */
typedef struct {
    ptr start, stop;
    int escaped;
} Span;

static int read_string(Cursor *c, Span *span) {
    span->start = c->p;
    if (c->p >= c->end || *c->p != '"' || skip_string(c, &span->escaped) < 0) return -1;
    span->stop = c->p;
    return 0;
}

/* A string value Python decodes into a str: checked as UTF-8 too, as msgspec checks it (the strings it skips, it
   does not check). */
static int read_str(Cursor *c, Span *span, Out *scratch) {
    if (read_string(c, span) < 0) return -1;
    size_t mark = scratch->len;
    int ok = put_string_body(scratch, span->start + 1, span->stop - 1, 1);
    scratch->len = mark;
    return ok;
}

/* -- BLAKE2b (RFC 7693), unkeyed, for the request ids ------------------------------------------------------- */

static const uint64_t blake2b_iv[8] = {
    0x6A09E667F3BCC908ULL, 0xBB67AE8584CAA73BULL, 0x3C6EF372FE94F82BULL, 0xA54FF53A5F1D36F1ULL,
    0x510E527FADE682D1ULL, 0x9B05688C2B3E6C1FULL, 0x1F83D9ABFB41BD6BULL, 0x5BE0CD19137E2179ULL};
static const unsigned char blake2b_sigma[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4}, {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13}, {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11}, {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5}, {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3}};

static inline uint64_t rotr64(uint64_t x, int n) { return x >> n | x << (64 - n); }

static void blake2b_compress(uint64_t h[8], const unsigned char block[128], uint64_t counted, int last) {
    uint64_t v[16], m[16];
    for (int i = 0; i < 8; i++) v[i] = h[i], v[i + 8] = blake2b_iv[i];
    v[12] ^= counted;
    if (last) v[14] = ~v[14];
    for (int i = 0; i < 16; i++) {
        m[i] = 0;
        for (int b = 7; b >= 0; b--) m[i] = m[i] << 8 | block[8 * i + b];  /* little-endian words */
    }
#define G(a, b, c, d, x, y)                                   \
    v[a] += v[b] + (x), v[d] = rotr64(v[d] ^ v[a], 32);       \
    v[c] += v[d], v[b] = rotr64(v[b] ^ v[c], 24);             \
    v[a] += v[b] + (y), v[d] = rotr64(v[d] ^ v[a], 16);       \
    v[c] += v[d], v[b] = rotr64(v[b] ^ v[c], 63)
    for (int round = 0; round < 12; round++) {
        const unsigned char *s = blake2b_sigma[round];
        G(0, 4, 8, 12, m[s[0]], m[s[1]]);
        G(1, 5, 9, 13, m[s[2]], m[s[3]]);
        G(2, 6, 10, 14, m[s[4]], m[s[5]]);
        G(3, 7, 11, 15, m[s[6]], m[s[7]]);
        G(0, 5, 10, 15, m[s[8]], m[s[9]]);
        G(1, 6, 11, 12, m[s[10]], m[s[11]]);
        G(2, 7, 8, 13, m[s[12]], m[s[13]]);
        G(3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
#undef G
    for (int i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
}

/* The 32 lowercase hex digits of BLAKE2b-128 of the given pieces, concatenated (what hexdigest() gives). */
static void blake2b_hex(const unsigned char *const pieces[], const size_t sizes[], int count, char hexdigits[32]) {
    static const char hex[] = "0123456789abcdef";
    uint64_t h[8];
    unsigned char block[128];
    size_t filled = 0;
    uint64_t counted = 0;
    for (int i = 0; i < 8; i++) h[i] = blake2b_iv[i];
    h[0] ^= 0x01010000ULL ^ 16;  /* no key, 16-byte digest */
    for (int piece = 0; piece < count; piece++) {
        const unsigned char *p = pieces[piece];
        size_t left = sizes[piece];
        while (left > 0) {
            if (filled == 128) {  /* a full block is compressed only once more bytes follow it */
                counted += 128;
                blake2b_compress(h, block, counted, 0);
                filled = 0;
            }
            size_t take = 128 - filled < left ? 128 - filled : left;
            memcpy(block + filled, p, take);
            filled += take, p += take, left -= take;
        }
    }
    counted += filled;
    memset(block + filled, 0, 128 - filled);
    blake2b_compress(h, block, counted, 1);
    for (int i = 0; i < 16; i++) {
        unsigned char byte = (unsigned char)(h[i / 8] >> (8 * (i % 8)));
        hexdigits[2 * i] = hex[byte >> 4];
        hexdigits[2 * i + 1] = hex[byte & 15];
    }
}

/* -- times: `unix_time` of proxy/openai_door/chat_response.py --------------------------------------------- */

static int digits_at(ptr p, int count, int *value) {
    *value = 0;
    for (int i = 0; i < count; i++) {
        if (!is_digit(p[i])) return -1;
        *value = *value * 10 + (p[i] - '0');
    }
    return 0;
}

static long long days_from_civil(int y, int m, int d) {  /* days since 1970-01-01 (proleptic Gregorian) */
    y -= m <= 2;
    int era = y / 400, yoe = y - era * 400;
    int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (long long)era * 146097 + doe - 719468;
}

/* int(datetime.fromisoformat(text).timestamp()) for the one form Python and this agree on beyond doubt (see the
   contract above); -1 for any other text (Python decides the row). */
static int read_time(ptr p, ptr end, long long *seconds) {
    int year, month, day, hour, minute, second, offset_hours = 0, offset_minutes = 0;
    if (end - p < 20 || digits_at(p, 4, &year) < 0 || p[4] != '-' || digits_at(p + 5, 2, &month) < 0 ||
        p[7] != '-' || digits_at(p + 8, 2, &day) < 0 || p[10] != 'T' || digits_at(p + 11, 2, &hour) < 0 ||
        p[13] != ':' || digits_at(p + 14, 2, &minute) < 0 || p[16] != ':' || digits_at(p + 17, 2, &second) < 0)
        return -1;
    static const int month_days[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (year < 1970 || year > 2200 || month < 1 || month > 12 || day < 1 || day > month_days[month - 1] ||
        (month == 2 && day == 29 && !leap) || hour > 23 || minute > 59 || second > 59)
        return -1;
    p += 19;
    long long micros = 0;
    if (*p == '.') {  /* Python keeps six digits and drops the rest */
        int digits = 0;
        for (p++; p < end && is_digit(*p); p++, digits++)
            if (digits < 6) micros = micros * 10 + (*p - '0');
        if (digits == 0) return -1;
        for (; digits < 6; digits++) micros *= 10;
    }
    if (end - p == 1 && *p == 'Z') {
        /* UTC */
    } else if (end - p == 6 && (*p == '+' || *p == '-') && digits_at(p + 1, 2, &offset_hours) == 0 &&
               p[3] == ':' && digits_at(p + 4, 2, &offset_minutes) == 0 && offset_hours < 24 && offset_minutes < 60) {
        if (*p == '-') offset_hours = -offset_hours, offset_minutes = -offset_minutes;
    } else {
        return -1;
    }
    long long whole = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second -
                      offset_hours * 3600 - offset_minutes * 60;
    /* total_seconds(): the microseconds divided by 10^6, correctly rounded (exact in a double below 2^53), then
       truncated toward zero by int() */
    *seconds = (long long)((double)(whole * 1000000 + micros) / 1e6);
    return 0;
}

/* -- one row ---------------------------------------------------------------------------------------------- */

typedef struct {
    Out out, choices, text, scratch;  /* the answers; one row's choices; one candidate's text; checks */
    /* the index: custom_ids' bytes and where each ends */
    ptr ids;
    Py_ssize_t ids_len;
    ptr ends;  /* lines + 1 native uint64s, read with memcpy (no alignment assumed) */
    Py_ssize_t lines;
    ptr model_json, batch_id;
    Py_ssize_t model_len, batch_len;
} Context;

typedef struct {
    TokenCounts usage;
    Span response_id, create_time, processed_time;  /* start NULL when absent or null */
    uint64_t line;
    int candidates;
} Row;

static const char *finish_reason(ptr text, Py_ssize_t size) {
    static const struct { const char *vertex, *openai; } table[] = {
        {"MAX_TOKENS", "length"}, {"SAFETY", "content_filter"}, {"RECITATION", "content_filter"},
        {"BLOCKLIST", "content_filter"}, {"PROHIBITED_CONTENT", "content_filter"}, {"SPII", "content_filter"},
        {"IMAGE_SAFETY", "content_filter"}};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if ((size_t)size == strlen(table[i].vertex) && memcmp(text, table[i].vertex, (size_t)size) == 0)
            return table[i].openai;
    return "stop";  /* STOP, an empty or missing reason, and any other */
}

static inline int is_null(Cursor *c) { return c->end - c->p >= 4 && memcmp(c->p, "null", 4) == 0; }

/* One part: its text (not a thought's) appended to the candidate's text. */
static int read_part(Cursor *c, Out *text, int *has_text) {
    int more = enter(c, '{', '}');
    if (more != 0) return more > 0 ? 0 : -1;
    int seen_text = 0, seen_thought = 0, thought = 0;
    size_t mark = text->len;
    do {
        ptr key;
        Py_ssize_t size;
        Span span;
        if (read_key(c, &key, &size) < 0) return -1;
        if (KEY_IS(key, size, "text")) {
            if (seen_text++ || read_string(c, &span) < 0) return -1;
            if (put_string_body(text, span.start + 1, span.stop - 1, 1) < 0) return -1;
        } else if (KEY_IS(key, size, "thought")) {
            if (seen_thought++) return -1;
            if (skip_literal(c, "true", 4) == 0) thought = 1;
            else if (skip_literal(c, "false", 5) < 0) return -1;
        } else if (KEY_IS(key, size, "functionCall")) {
            return -1;  /* tool calls: Python writes them */
        } else if (skip_value(c) < 0) {
            return -1;
        }
    } while ((more = next_member(c, '}')) == 1);
    if (more < 0) return -1;
    if (thought) text->len = mark;
    else if (seen_text) *has_text = 1;
    return 0;
}

static int read_content(Cursor *c, Out *text, int *has_text) {
    int more = enter(c, '{', '}');
    if (more != 0) return more > 0 ? 0 : -1;
    int seen_parts = 0;
    do {
        ptr key;
        Py_ssize_t size;
        if (read_key(c, &key, &size) < 0) return -1;
        if (KEY_IS(key, size, "parts")) {
            if (seen_parts++) return -1;
            int items = enter(c, '[', ']');
            if (items < 0) return -1;
            if (items == 0) {
                do {
                    if (read_part(c, text, has_text) < 0) return -1;
                } while ((items = next_member(c, ']')) == 1);
                if (items < 0) return -1;
            }
        } else if (skip_value(c) < 0) {
            return -1;
        }
    } while ((more = next_member(c, '}')) == 1);
    return more;
}

/* One candidate, written to ctx->choices as `_TEXT_CHOICE` (chat_response.py) writes it; `at`: its position. */
static int read_candidate(Cursor *c, Context *ctx, int at) {
    int more = enter(c, '{', '}');
    if (more < 0) return -1;
    int seen_content = 0, seen_finish = 0, seen_index = 0, has_text = 0;
    uint64_t index = (uint64_t)at;
    const char *finish = "stop";
    ctx->text.len = 0;
    while (more == 0) {
        ptr key;
        Py_ssize_t size;
        Span span;
        if (read_key(c, &key, &size) < 0) return -1;
        if (KEY_IS(key, size, "content")) {
            if (seen_content++ || read_content(c, &ctx->text, &has_text) < 0) return -1;
        } else if (KEY_IS(key, size, "finishReason")) {
            if (seen_finish++ || read_str(c, &span, &ctx->scratch) < 0 || span.escaped) return -1;
            finish = finish_reason(span.start + 1, span.stop - span.start - 2);
        } else if (KEY_IS(key, size, "index")) {
            if (seen_index++ || read_count(c, &index) < 0) return -1;
        } else if (skip_value(c) < 0) {
            return -1;
        }
        int next = next_member(c, '}');
        if (next < 0) return -1;
        if (next == 0) break;
    }
    Out *o = &ctx->choices;
    if (at > 0) PUT_LITERAL(o, ",");
    PUT_LITERAL(o, "{\"index\":");
    put_int(o, (long long)index);
    PUT_LITERAL(o, ",\"message\":{\"role\":\"assistant\",\"content\":");
    if (has_text) {
        PUT_LITERAL(o, "\"");
        put(o, ctx->text.data, ctx->text.len);
        PUT_LITERAL(o, "\"");
    } else {
        PUT_LITERAL(o, "null");
    }
    PUT_LITERAL(o, ",\"refusal\":null},\"finish_reason\":\"");
    put(o, finish, strlen(finish));
    PUT_LITERAL(o, "\",\"logprobs\":null}");
    return 0;
}

/* A string or null member that Python reads as `str | None`: its span (start NULL for null). */
static int read_optional_str(Cursor *c, Span *span, Out *scratch) {
    if (is_null(c)) {
        c->p += 4;
        span->start = NULL;
        return 0;
    }
    return read_str(c, span, scratch);
}

static int read_response(Cursor *c, Context *ctx, Row *row) {
    int more = enter(c, '{', '}');
    if (more < 0) return -1;
    unsigned int seen = 0;
    while (more == 0) {
        ptr key;
        Py_ssize_t size;
        Span span;
        unsigned int bit = 0;
        if (read_key(c, &key, &size) < 0) return -1;
        if (KEY_IS(key, size, "candidates")) bit = 1;
        else if (KEY_IS(key, size, "createTime")) bit = 2;
        else if (KEY_IS(key, size, "responseId")) bit = 4;
        else if (KEY_IS(key, size, "modelVersion")) bit = 8;
        else if (KEY_IS(key, size, "usageMetadata")) bit = 16;
        else if (KEY_IS(key, size, "promptFeedback")) return -1;
        if (seen & bit) return -1;
        seen |= bit;
        if (bit == 1) {
            if (is_null(c)) {
                c->p += 4;
            } else {
                int items = enter(c, '[', ']');
                if (items < 0) return -1;
                if (items == 0) {
                    do {
                        if (read_candidate(c, ctx, row->candidates++) < 0) return -1;
                    } while ((items = next_member(c, ']')) == 1);
                    if (items < 0) return -1;
                }
            }
        } else if (bit == 2) {
            if (read_optional_str(c, &row->create_time, &ctx->scratch) < 0) return -1;
        } else if (bit == 4) {
            if (read_optional_str(c, &row->response_id, &ctx->scratch) < 0) return -1;
        } else if (bit == 8) {
            if (read_optional_str(c, &span, &ctx->scratch) < 0) return -1;
        } else if (bit == 16) {
            if (is_null(c)) c->p += 4;
            else if (read_usage(c, &row->usage) < 0) return -1;
        } else if (skip_value(c) < 0) {
            return -1;
        }
        int next = next_member(c, '}');
        if (next < 0) return -1;
        if (next == 0) break;
    }
    return 0;
}

/* The echoed request: its labels' `vbp_line` (every label a string, as Python's dict[str, str] requires). */
static int read_labels(Cursor *c, Row *row, Out *scratch) {
    int more = enter(c, '{', '}');
    if (more != 0) return more > 0 ? 0 : -1;
    do {
        ptr key;
        Py_ssize_t size;
        Span span;
        if (read_key(c, &key, &size) < 0 || read_str(c, &span, scratch) < 0) return -1;
        size_t mark = scratch->len;  /* a dict's keys are decoded too: checked as UTF-8 */
        int valid = put_string_body(scratch, key, key + size, 1);
        scratch->len = mark;
        if (valid < 0) return -1;
        if (KEY_IS(key, size, "vbp_line")) {
            Py_ssize_t digits = span.stop - span.start - 2;
            if (row->line || span.escaped || digits < 1 || digits > 11) return -1;
            for (ptr p = span.start + 1; p < span.stop - 1; p++) {
                if (!is_digit(*p)) return -1;
                row->line = row->line * 10 + (uint64_t)(*p - '0');
            }
            if (row->line == 0) return -1;  /* line 0 is no line: Python looks for the custom_id */
        }
    } while ((more = next_member(c, '}')) == 1);
    return more;
}

static int read_request(Cursor *c, Row *row, Out *scratch) {
    int more = enter(c, '{', '}'), seen_labels = 0;
    if (more != 0) return more > 0 ? 0 : -1;
    do {
        ptr key;
        Py_ssize_t size;
        if (read_key(c, &key, &size) < 0) return -1;
        if (KEY_IS(key, size, "labels")) {
            if (seen_labels++ || read_labels(c, row, scratch) < 0) return -1;
        } else if (skip_value(c) < 0) {
            return -1;
        }
    } while ((more = next_member(c, '}')) == 1);
    return more;
}

/* The row at p: 0 with `row` filled, ctx->choices written and `newline` at its '\n', or -1 (Python decides). */
static int read_row(Context *ctx, ptr p, ptr end, Row *row, ptr *newline) {
    Cursor c = {p, end, 0};
    unsigned int seen = 0;
    int more;
    memset(row, 0, sizeof *row);
    ctx->choices.len = 0;
    if (enter(&c, '{', '}') != 0) return -1;
    do {
        ptr key;
        Py_ssize_t size;
        Span span;
        unsigned int bit = 0;
        if (read_key(&c, &key, &size) < 0) return -1;
        if (KEY_IS(key, size, "response")) bit = 1;
        else if (KEY_IS(key, size, "request")) bit = 2;
        else if (KEY_IS(key, size, "status")) bit = 4;
        else if (KEY_IS(key, size, "processed_time")) bit = 8;
        else if (KEY_IS(key, size, "custom_id")) bit = 16;
        else if (KEY_IS(key, size, "instance") || KEY_IS(key, size, "predictions")) return -1;
        if (seen & bit) return -1;
        seen |= bit;
        if (bit == 1) {
            if (read_response(&c, ctx, row) < 0) return -1;
        } else if (bit == 2) {
            if (read_request(&c, row, &ctx->scratch) < 0) return -1;
        } else if (bit == 4 || bit == 16) {
            if (read_optional_str(&c, &span, &ctx->scratch) < 0) return -1;
        } else if (bit == 8) {
            if (read_optional_str(&c, &row->processed_time, &ctx->scratch) < 0) return -1;
        } else if (skip_value(&c) < 0) {
            return -1;
        }
    } while ((more = next_member(&c, '}')) == 1);
    if (more < 0 || !(seen & 1) || row->line == 0 || row->line > (uint64_t)ctx->lines) return -1;
    if (c.p < end && *c.p == '\n') *newline = c.p;
    else if (end - c.p >= 2 && c.p[0] == '\r' && c.p[1] == '\n') *newline = c.p + 1;
    else return -1;
    return 0;
}

/* The `created` of a row: the first of createTime and processed_time that is a non-empty string. */
static int row_created(const Row *row, long long *created) {
    const Span *moments[2] = {&row->create_time, &row->processed_time};
    for (int i = 0; i < 2; i++) {
        const Span *span = moments[i];
        if (span->start == NULL || span->stop - span->start == 2) continue;
        if (span->escaped) return -1;
        return read_time(span->start + 1, span->stop - 1, created);
    }
    *created = 0;
    return 0;
}

/* The output line of a row that read_row took (see `_OK_LINE` and `_COMPLETION` in Python). */
static int write_line(Context *ctx, const Row *row) {
    Out *o = &ctx->out;
    long long created;
    if (row_created(row, &created) < 0) return -1;
    uint64_t id_start, id_end;
    memcpy(&id_start, ctx->ends + (row->line - 1) * sizeof(uint64_t), sizeof id_start);
    memcpy(&id_end, ctx->ends + row->line * sizeof(uint64_t), sizeof id_end);
    if (id_start > id_end || id_end > (uint64_t)ctx->ids_len) return -1;  /* a damaged index: Python raises */
    char digits[24], request_id[32], completion_id[32];
    const char *number = decimal((unsigned long long)row->line, digits);
    size_t number_len = (size_t)(digits + 24 - number);
    const unsigned char *pieces[4] = {ctx->batch_id, (const unsigned char *)"\0", (const unsigned char *)number,
                                      (const unsigned char *)"\0completion"};
    size_t sizes[4] = {(size_t)ctx->batch_len, 1, number_len, 11};
    blake2b_hex(pieces, sizes, 3, request_id);
    int has_id = row->response_id.start != NULL && row->response_id.stop - row->response_id.start > 2;
    PUT_LITERAL(o, "{\"id\":\"batch_req_");
    put(o, request_id, 32);
    PUT_LITERAL(o, "\",\"custom_id\":\"");
    if (put_string_body(o, ctx->ids + id_start, ctx->ids + id_end, 0) < 0) return -1;
    PUT_LITERAL(o, "\",\"response\":{\"status_code\":200,\"request_id\":\"");
    if (has_id) {
        if (put_string_body(o, row->response_id.start + 1, row->response_id.stop - 1, 1) < 0) return -1;
    } else {
        put(o, request_id, 32);
    }
    PUT_LITERAL(o, "\",\"body\":{\"id\":\"chatcmpl-");
    if (has_id) {
        put_string_body(o, row->response_id.start + 1, row->response_id.stop - 1, 1);
    } else {
        blake2b_hex(pieces, sizes, 4, completion_id);
        put(o, completion_id, 32);
    }
    PUT_LITERAL(o, "\",\"object\":\"chat.completion\",\"created\":");
    put_int(o, created);
    PUT_LITERAL(o, ",\"model\":");
    put(o, ctx->model_json, (size_t)ctx->model_len);
    PUT_LITERAL(o, ",\"choices\":[");
    if (row->candidates) put(o, ctx->choices.data, ctx->choices.len);
    else PUT_LITERAL(o, "{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,\"refusal\":null},"
                        "\"finish_reason\":\"content_filter\",\"logprobs\":null}");
    /* counts have at most MAX_DIGITS digits and audio sums at most ROW_GUARD: these sums fit a long long */
    const TokenCounts *u = &row->usage;
    long long prompt = (long long)(u->prompt + u->tool_use), completion = (long long)(u->candidates + u->thoughts);
    PUT_LITERAL(o, "],\"usage\":{\"prompt_tokens\":");
    put_int(o, prompt);
    PUT_LITERAL(o, ",\"completion_tokens\":");
    put_int(o, completion);
    PUT_LITERAL(o, ",\"total_tokens\":");
    put_int(o, prompt + completion);
    PUT_LITERAL(o, ",\"prompt_tokens_details\":{\"cached_tokens\":");
    put_int(o, (long long)u->cached);
    PUT_LITERAL(o, ",\"audio_tokens\":");
    put_int(o, (long long)u->audio_prompt);
    PUT_LITERAL(o, "},\"completion_tokens_details\":{\"reasoning_tokens\":");
    put_int(o, (long long)u->thoughts);
    PUT_LITERAL(o, "}}}},\"error\":null}\n");  /* details, usage, body, response */
    return 0;
}

/* -- the call --------------------------------------------------------------------------------------------- */

static PyObject *answer_rows(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *data, *ids, *ends, *model_json, *batch_id;
    Py_ssize_t pos, end, base;
    int output;
    /* `bytes` only ("S"): the reading runs without the GIL, and a mutable buffer could change under it. */
    if (!PyArg_ParseTuple(args, "SnnnSSSSp", &data, &pos, &end, &base, &ids, &ends, &model_json, &batch_id, &output))
        return NULL;
    Py_ssize_t size = PyBytes_GET_SIZE(data), ends_size = PyBytes_GET_SIZE(ends);
    if (pos < 0 || end < pos || end > size || base < 0) {
        PyErr_SetString(PyExc_ValueError, "pos, end or base is outside the buffer");
        return NULL;
    }
    if (ends_size < (Py_ssize_t)sizeof(uint64_t) || ends_size % (Py_ssize_t)sizeof(uint64_t) != 0) {
        PyErr_SetString(PyExc_ValueError, "ends must be the index's native uint64 array, a leading 0 first");
        return NULL;
    }
    Context ctx = {0};
    ctx.ids = (ptr)PyBytes_AS_STRING(ids);
    ctx.ids_len = PyBytes_GET_SIZE(ids);
    ctx.ends = (ptr)PyBytes_AS_STRING(ends);
    ctx.lines = ends_size / (Py_ssize_t)sizeof(uint64_t) - 1;
    ctx.model_json = (ptr)PyBytes_AS_STRING(model_json);
    ctx.model_len = PyBytes_GET_SIZE(model_json);
    ctx.batch_id = (ptr)PyBytes_AS_STRING(batch_id);
    ctx.batch_len = PyBytes_GET_SIZE(batch_id);
    Out lines = {0}, answer_ends = {0};
    ptr buf = (ptr)PyBytes_AS_STRING(data);
    /* The answers are about a quarter of the rows' bytes: room for a third at once spares the copies of growing
       the buffer by doubling (untouched room costs no memory). */
    if (output && end > pos) out_reserve(&ctx.out, (size_t)(end - pos) / 3 + 4096);

    Py_BEGIN_ALLOW_THREADS
    while (pos < end) {
        ptr newline;
        Row row;
        size_t mark = ctx.out.len;
        if (read_row(&ctx, buf + pos, buf + end, &row, &newline) < 0) break;
        if (output && write_line(&ctx, &row) < 0) {
            ctx.out.len = mark;
            break;
        }
        int64_t line = (int64_t)row.line, answer_end = (int64_t)(base + (Py_ssize_t)ctx.out.len);
        put(&lines, &line, sizeof line);
        put(&answer_ends, &answer_end, sizeof answer_end);
        pos = newline + 1 - buf;
        if (ctx.choices.failed || ctx.text.failed || ctx.scratch.failed) ctx.out.failed = 1;
        if (ctx.out.failed || lines.failed || answer_ends.failed) break;
    }
    Py_END_ALLOW_THREADS

    PyObject *result = NULL;
    if (ctx.out.failed || lines.failed || answer_ends.failed) {
        PyErr_NoMemory();
    } else {
        result = Py_BuildValue("(ny#y#y#)", pos, lines.data ? lines.data : "", (Py_ssize_t)lines.len,
                               answer_ends.data ? answer_ends.data : "", (Py_ssize_t)answer_ends.len,
                               ctx.out.data ? ctx.out.data : "", (Py_ssize_t)ctx.out.len);
    }
    PyMem_RawFree(ctx.out.data);
    PyMem_RawFree(ctx.choices.data);
    PyMem_RawFree(ctx.text.data);
    PyMem_RawFree(ctx.scratch.data);
    PyMem_RawFree(lines.data);
    PyMem_RawFree(answer_ends.data);
    return result;
}

/* Append (start, stop) to `runs`: -1 with the exception set when that fails. */
static int append_span(PyObject *runs, int64_t start, int64_t stop) {
    PyObject *span = Py_BuildValue("(LL)", (long long)start, (long long)stop);
    int failed = span == NULL || PyList_Append(runs, span) < 0;
    Py_XDECREF(span);
    return failed ? -1 : 0;
}

/* The parent's side (`OutputLines.decide_all`): take packed answers in the rows' order from row `at`, as
   `OutputLines.decide` would, while the rows are unflagged: a row for line 0 is unmatched, a row for a line already
   answered is repeated, any other answers its line (marked in `answered`). Stops at the first flagged row (Python
   decides it) and returns (where it stopped, unmatched, repeated, the runs of answers taken as [start, stop) spans
   of `answers`): nothing is copied, so a range whose rows are all taken is passed on as it is. The GIL is held:
   `answered` is a bytearray. */
static PyObject *decide_rows(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *lines, *flags, *ends, *runs = NULL, *result = NULL;
    Py_buffer answered;
    Py_ssize_t at, size;
    if (!PyArg_ParseTuple(args, "SSSnw*n", &lines, &flags, &ends, &size, &answered, &at)) return NULL;
    Py_ssize_t rows = PyBytes_GET_SIZE(flags), unmatched = 0, repeated = 0;
    if (PyBytes_GET_SIZE(lines) != rows * 8 || PyBytes_GET_SIZE(ends) != rows * 8 || at < 0 || at > rows) {
        PyErr_SetString(PyExc_ValueError, "lines, flags and ends must be of one length, and at inside them");
        goto done;
    }
    if ((runs = PyList_New(0)) == NULL) goto done;
    ptr line_at = (ptr)PyBytes_AS_STRING(lines), end_at = (ptr)PyBytes_AS_STRING(ends);
    ptr flag = (ptr)PyBytes_AS_STRING(flags);
    unsigned char *marks = answered.buf;
    int64_t start = 0, run = 0;  /* the taken answers from `run` to `start` are a run still to be handed back */
    if (at > 0) memcpy(&start, end_at + (at - 1) * 8, 8);
    run = start;
    for (; at < rows && !flag[at]; at++) {
        int64_t line, stop;
        memcpy(&line, line_at + at * 8, 8);
        memcpy(&stop, end_at + at * 8, 8);
        if (start < 0 || stop < start || stop > size || line < 0 || line >= answered.len) {
            PyErr_SetString(PyExc_ValueError, "an answer outside its buffer, or a line outside `answered`");
            goto done;
        }
        if (line == 0 || marks[line]) {
            if (line == 0) unmatched++;
            else repeated++;
            if (start > run && append_span(runs, run, start) < 0) goto done;
            run = stop;
        } else {
            marks[line] = 1;
        }
        start = stop;
    }
    if (start > run && append_span(runs, run, start) < 0) goto done;
    result = Py_BuildValue("(nnnO)", at, unmatched, repeated, runs);
done:
    Py_XDECREF(runs);
    PyBuffer_Release(&answered);
    return result;
}

static PyMethodDef methods[] = {
    {"answer_rows", answer_rows, METH_VARARGS,
     "answer_rows(buf, pos, end, base, ids, ends, model_json, batch_id, output) -> (pos, lines, ends, answers)\n\n"
     "Answer the common chat rows of buf[pos:end] from `pos`; stop at the first row Python must decide. `lines` and\n"
     "`ends` are native int64s, one per row (its line; where its answer ends in `answers`, plus `base`)."},
    {"decide_rows", decide_rows, METH_VARARGS,
     "decide_rows(lines, flags, ends, size, answered, at) -> (at, unmatched, repeated, [(start, stop)])\n\n"
     "Decide the packed answers from row `at` as OutputLines.decide would, up to the first flagged row."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_chatrows", "The compiled fast path of the OpenAI door's chat output conversion.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__chatrows(void) {
    json_tables_init();
    return PyModule_Create(&module);
}
