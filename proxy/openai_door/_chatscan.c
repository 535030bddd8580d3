/* The fast path of the OpenAI door's chat line conversion (proxy/openai_door/file_conversion.py calls it; this is
   its contract).

   `chat_lines(buf, pos, model, line)` converts the lines of `buf` from `pos` on (each ended by LF, a CR before it
   not part of the line; the first is the caller's line number `line`) for as long as each is, beyond doubt, a chat
   request of the common shape whose body.model is `model`. It returns where it stopped (the start of the first
   line it did not take, or of an unfinished last line), the custom_ids of the lines it took, and their converted
   lines, each followed by LF: byte for byte what the Python path (chat_request.chat_request, then msgspec's
   encoding of `{"custom_id": ..., "request": ...}`) writes for them. Python decides the line it stopped at, so
   chat_request.py stays the one definition of the conversion and of every error message, and the tests hold this
   code to it. Whether the custom_ids are new and the count within the limit is left to the caller.

   The common shape, claimed: a JSON object with exactly custom_id (a non-empty string without escapes), method
   "POST", url "/v1/chat/completions" or "/chat/completions", and body; a body with model (a non-empty string
   without escapes), messages, and nothing but max_tokens, max_completion_tokens, n, seed (plain integers of at
   most 18 digits, not -0), temperature, top_p, presence_penalty, frequency_penalty (such integers, or decimals
   without exponent written as Python's repr writes them), stop (a string or a list of at most 5), reasoning_effort,
   `null` response_format / tools / tool_choice, and the harmless user, safety_identifier, prompt_cache_key,
   metadata (strings, or an object of strings), store/stream/logprobs `false`, parallel_tool_calls `true`; each
   value in its range, null counting as absent where Python's does. Messages (at most MAX_MESSAGES): system,
   developer, user and assistant (tool_calls and refusal only as null), each with content a string or a non-empty
   list of exactly {"type": "text", "text": <string>} parts, and at least one user or assistant message.

   Left to Python, never imitated: tool messages, tool calls, images, response formats, tools, any repeated key,
   escapes in keys and in the strings compared or returned (custom_id, model, role, method, url, part type),
   numbers outside the forms above, text that is not valid UTF-8, nesting deeper than 64, and anything else.
   Strings copied to the output are re-escaped as msgspec escapes (", \ and control characters only; \u escapes of
   other characters become their UTF-8), so escaped input converts to the same bytes as Python's. */

#include "../_jsonscan.h"

enum { MAX_MESSAGES = 256, MAX_TEXTS = 1024, MAX_NUMBER = 24 };

typedef struct {
    char *data;
    size_t size, capacity;
} Buf;

static Buf out;  /* reused by every call (the GIL is held throughout) */

static int reserve(Buf *b, size_t more) {
    if (b->size + more <= b->capacity) return 0;
    size_t capacity = b->capacity ? b->capacity : 1 << 16;
    while (capacity < b->size + more) capacity *= 2;
    char *data = realloc(b->data, capacity);
    if (data == NULL) return -1;
    b->data = data;
    b->capacity = capacity;
    return 0;
}

static int put(Buf *b, const void *bytes, size_t size) {
    if (reserve(b, size) < 0) return -1;
    memcpy(b->data + b->size, bytes, size);
    b->size += size;
    return 0;
}

#define PUT(b, literal) put((b), (literal), sizeof(literal) - 1)

static unsigned int hex4(ptr p) {
    unsigned int value = 0;
    for (int i = 0; i < 4; i++) value = value << 4 | hex_value[p[i]];
    return value;
}

/* A string of the line, as skip_string found it: from its opening quote to past its closing one. */
typedef struct {
    ptr start, end;
    int escaped;
} Text;

static int read_text(Cursor *c, Text *text) {
    text->start = c->p;
    if (c->p >= c->end || *c->p != '"' || skip_string(c, &text->escaped) < 0) return -1;
    text->end = c->p;
    return 0;
}

/* The string, written as msgspec writes the text it decodes to. skip_string has checked the escapes (hex digits,
   surrogate pairs), and no escape makes the text longer, so one reservation is enough. */
static int copy_text(const Text *text, Buf *b) {
    size_t size = (size_t)(text->end - text->start);
    if (!text->escaped) return put(b, text->start, size);
    if (reserve(b, size) < 0) return -1;
    unsigned char *o = (unsigned char *)b->data + b->size;
    ptr p = text->start + 1, end = text->end - 1;
    *o++ = '"';
    while (p < end) {
        ptr backslash = memchr(p, '\\', (size_t)(end - p));
        if (backslash == NULL) backslash = end;
        memcpy(o, p, (size_t)(backslash - p));
        o += backslash - p;
        p = backslash;
        if (p >= end) break;
        unsigned char e = p[1];
        if (e == '/') {
            *o++ = '/';
            p += 2;
            continue;
        }
        if (e != 'u') {
            *o++ = '\\';
            *o++ = e;
            p += 2;
            continue;
        }
        unsigned int u = hex4(p + 2);
        p += 6;
        if (u >= 0xD800 && u <= 0xDBFF) {
            u = 0x10000 + ((u - 0xD800) << 10) + (hex4(p + 2) - 0xDC00);
            p += 6;
        }
        if (u < 0x20) {
            static const char letters[] = "btn\0fr";  /* 8..13; 11 (\v) has no letter */
            *o++ = '\\';
            if (u >= 8 && u <= 13 && letters[u - 8]) {
                *o++ = (unsigned char)letters[u - 8];
            } else {
                static const char digits[] = "0123456789abcdef";
                *o++ = 'u', *o++ = '0', *o++ = '0', *o++ = digits[u >> 4], *o++ = digits[u & 15];
            }
        } else if (u == '"' || u == '\\') {
            *o++ = '\\';
            *o++ = (unsigned char)u;
        } else if (u < 0x80) {
            *o++ = (unsigned char)u;
        } else if (u < 0x800) {
            *o++ = (unsigned char)(0xC0 | u >> 6);
            *o++ = (unsigned char)(0x80 | (u & 0x3F));
        } else if (u < 0x10000) {
            *o++ = (unsigned char)(0xE0 | u >> 12);
            *o++ = (unsigned char)(0x80 | (u >> 6 & 0x3F));
            *o++ = (unsigned char)(0x80 | (u & 0x3F));
        } else {
            *o++ = (unsigned char)(0xF0 | u >> 18);
            *o++ = (unsigned char)(0x80 | (u >> 12 & 0x3F));
            *o++ = (unsigned char)(0x80 | (u >> 6 & 0x3F));
            *o++ = (unsigned char)(0x80 | (u & 0x3F));
        }
    }
    *o++ = '"';
    b->size = (size_t)((char *)o - b->data);
    return 0;
}

static int copy_string(Cursor *c, Buf *b) {
    Text text;
    return read_text(c, &text) < 0 ? -1 : copy_text(&text, b);
}

/* A string without escapes; its bytes between the quotes. */
static int read_plain(Cursor *c, ptr *text, Py_ssize_t *size) {
    ptr start = c->p;
    int escaped;
    if (c->p >= c->end || *c->p != '"' || skip_string(c, &escaped) < 0 || escaped) return -1;
    *text = start + 1;
    *size = c->p - start - 2;
    return 0;
}

static int is_plain(ptr at, ptr end, const char *word) {
    Cursor c = {at, end, 0};
    ptr text;
    Py_ssize_t size;
    return read_plain(&c, &text, &size) == 0 && (size_t)size == strlen(word) && memcmp(text, word, (size_t)size) == 0;
}

static int is_literal(ptr at, ptr end, const char *word) {
    size_t size = strlen(word);
    return (size_t)(end - at) >= size && memcmp(at, word, size) == 0;  /* the value was skipped whole before */
}

/* An integer as msgspec writes it back: -?(0|[1-9][0-9]{0,17}), not -0, no fraction or exponent. */
static int read_int(ptr at, ptr end, long long *value, ptr *text, Py_ssize_t *size) {
    ptr p = at;
    int negative = p < end && *p == '-';
    if (negative) p++;
    if (p >= end || !is_digit(*p)) return -1;
    long long v = 0;
    int digits = 0;
    if (*p == '0') {
        p++;
        if (negative) return -1;
    } else {
        while (p < end && is_digit(*p)) {
            if (++digits > 18) return -1;
            v = v * 10 + (*p++ - '0');
        }
    }
    if (p < end && (*p == '.' || *p == 'e' || *p == 'E' || is_digit(*p))) return -1;
    *value = negative ? -v : v;
    *text = at;
    *size = p - at;
    return 0;
}

/* An integer as above, or a decimal without exponent that Python's repr (and so msgspec) writes the same way. */
static int read_number(ptr at, ptr end, double *value, ptr *text, Py_ssize_t *size) {
    long long integer;
    if (read_int(at, end, &integer, text, size) == 0) {
        *value = (double)integer;
        return 0;
    }
    Cursor c = {at, end, 0};
    if (skip_number(&c) < 0) return -1;
    Py_ssize_t length = c.p - at;
    if (length >= MAX_NUMBER || memchr(at, 'e', (size_t)length) || memchr(at, 'E', (size_t)length)) return -1;
    char literal[MAX_NUMBER];
    memcpy(literal, at, (size_t)length);
    literal[length] = 0;
    double v = PyOS_string_to_double(literal, NULL, NULL);
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    char *written = PyOS_double_to_string(v, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (written == NULL) {
        PyErr_Clear();
        return -1;
    }
    int same = strcmp(written, literal) == 0;
    PyMem_Free(written);
    if (!same) return -1;
    *value = v;
    *text = at;
    *size = length;
    return 0;
}

/* A harmless parameter's value that msgspec certainly decodes: a string, null, or an object of strings. */
static int harmless_value(ptr at, ptr end) {
    Cursor c = {at, end, 0};
    int escaped, more;
    if (*at == '"' || *at == 'n') return 0;  /* skipped whole before: a valid string, or null */
    if ((more = enter(&c, '{', '}')) != 0) return more > 0 ? 0 : -1;
    do {
        ptr key;
        Py_ssize_t size;
        if (read_key(&c, &key, &size) < 0 || c.p >= c.end || *c.p != '"' || skip_string(&c, &escaped) < 0) return -1;
    } while ((more = next_member(&c, '}')) == 1);
    return more;
}

enum { SYSTEM, USER, ASSISTANT };

typedef struct {
    int role;
    int first, count;  /* its texts: texts[first .. first + count - 1] */
} Message;

typedef struct {
    Message messages[MAX_MESSAGES];
    Text texts[MAX_TEXTS];
    int message_count, text_count;
} Messages;

/* content: a string, or a non-empty list of text parts; its texts recorded. */
static int read_content(Cursor *c, Messages *m) {
    if (c->p < c->end && *c->p == '"')
        return m->text_count == MAX_TEXTS ? -1 : read_text(c, &m->texts[m->text_count++]);
    int more = enter(c, '[', ']');
    if (more != 0) return -1;  /* not a list, or an empty one (refused by Python) */
    do {
        ptr key, type = NULL;
        Py_ssize_t size;
        int texts = 0;
        if (enter(c, '{', '}') != 0 || m->text_count == MAX_TEXTS) return -1;
        do {
            if (read_key(c, &key, &size) < 0) return -1;
            if (KEY_IS(key, size, "type") && type == NULL) {
                type = c->p;
                if (skip_value(c) < 0) return -1;
            } else if (KEY_IS(key, size, "text") && !texts++) {
                if (read_text(c, &m->texts[m->text_count]) < 0) return -1;
            } else {
                return -1;
            }
        } while ((more = next_member(c, '}')) == 1);
        if (more < 0 || type == NULL || !texts || !is_plain(type, c->end, "text")) return -1;
        m->text_count++;
    } while ((more = next_member(c, ']')) == 1);
    return more;
}

/* The messages list, at its '[': each message's role and texts recorded. */
static int read_messages(Cursor *c, Messages *m) {
    int more = enter(c, '[', ']');
    m->message_count = m->text_count = 0;
    if (more != 0) return -1;
    do {
        ptr key, role = NULL, tool_calls = NULL, refusal = NULL;
        Py_ssize_t size;
        int content = 0, first = m->text_count;
        if (m->message_count == MAX_MESSAGES || enter(c, '{', '}') != 0) return -1;
        do {
            if (read_key(c, &key, &size) < 0) return -1;
            if (KEY_IS(key, size, "content") && !content++) {
                if (read_content(c, m) < 0) return -1;
                continue;
            }
            ptr *slot = KEY_IS(key, size, "role") ? &role : KEY_IS(key, size, "tool_calls") ? &tool_calls
                      : KEY_IS(key, size, "refusal") ? &refusal : NULL;
            if (slot == NULL || *slot != NULL) return -1;
            *slot = c->p;
            if (skip_value(c) < 0) return -1;
        } while ((more = next_member(c, '}')) == 1);
        if (more < 0 || role == NULL || !content) return -1;
        Message *message = &m->messages[m->message_count++];
        message->first = first;
        message->count = m->text_count - first;
        if (is_plain(role, c->end, "user")) message->role = USER;
        else if (is_plain(role, c->end, "assistant")) message->role = ASSISTANT;
        else if (is_plain(role, c->end, "system") || is_plain(role, c->end, "developer")) message->role = SYSTEM;
        else return -1;
        if ((tool_calls || refusal) && message->role != ASSISTANT) return -1;
        if ((tool_calls && !is_literal(tool_calls, c->end, "null")) ||
            (refusal && !is_literal(refusal, c->end, "null")))
            return -1;
    } while ((more = next_member(c, ']')) == 1);
    return more;
}

/* A message's texts as parts: {"text": ...}, each but the first preceded by a comma when `comma` is set. */
static int write_parts(const Messages *m, const Message *message, Buf *b, int *comma) {
    for (int i = message->first; i < message->first + message->count; i++) {
        if ((*comma && PUT(b, ",") < 0) || PUT(b, "{\"text\":") < 0 || copy_text(&m->texts[i], b) < 0 ||
            PUT(b, "}") < 0)
            return -1;
        *comma = 1;
    }
    return 0;
}

enum {
    MODEL, MESSAGES, MAX_TOKENS, MAX_COMPLETION_TOKENS, TEMPERATURE, TOP_P, PRESENCE_PENALTY, FREQUENCY_PENALTY, N,
    SEED, STOP, REASONING_EFFORT, RESPONSE_FORMAT, TOOLS, TOOL_CHOICE, USER_ID, SAFETY_IDENTIFIER, PROMPT_CACHE_KEY,
    METADATA, STORE, STREAM, LOGPROBS, PARALLEL_TOOL_CALLS, FIELDS
};
static const char *const FIELD_NAMES[FIELDS] = {
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "presence_penalty",
    "frequency_penalty", "n", "seed", "stop", "reasoning_effort", "response_format", "tools", "tool_choice", "user",
    "safety_identifier", "prompt_cache_key", "metadata", "store", "stream", "logprobs", "parallel_tool_calls",
};

/* A generationConfig member: its key (with the comma or brace before it) then the value's own text. */
static int config_member(Buf *b, int *opened, const char *key, ptr text, Py_ssize_t size) {
    static const char open[] = ",\"generationConfig\":{";
    if ((*opened ? PUT(b, ",") : PUT(b, open)) < 0) return -1;
    *opened = 1;
    return put(b, "\"", 1) < 0 || put(b, key, strlen(key)) < 0 || put(b, "\":", 2) < 0 ||
           put(b, text, (size_t)size) < 0 ? -1 : 0;
}

static int generation_config(ptr *at, ptr end, Buf *b) {
    int opened = 0;
    ptr text;
    Py_ssize_t size;
    long long integer;
    double number;
    /* max_tokens / max_completion_tokens: one of them, or both the same */
    ptr limit = NULL;
    Py_ssize_t limit_size = 0;
    long long limit_value = 0;
    for (int field = MAX_TOKENS; field <= MAX_COMPLETION_TOKENS; field++) {
        if (at[field] == NULL || is_literal(at[field], end, "null")) continue;
        if (read_int(at[field], end, &integer, &text, &size) < 0 || integer < 1 || integer > 2147483647) return -1;
        if (limit != NULL && integer != limit_value) return -1;
        limit = text, limit_size = size, limit_value = integer;
    }
    if (limit != NULL && config_member(b, &opened, "maxOutputTokens", limit, limit_size) < 0) return -1;
    static const struct { int field; const char *key; double low, high; } ranges[] = {
        {TEMPERATURE, "temperature", 0, 2}, {TOP_P, "topP", 0, 1}, {PRESENCE_PENALTY, "presencePenalty", -2, 2},
        {FREQUENCY_PENALTY, "frequencyPenalty", -2, 2},
    };
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
        ptr value = at[ranges[i].field];
        if (value == NULL || is_literal(value, end, "null")) continue;
        if (read_number(value, end, &number, &text, &size) < 0 || !(ranges[i].low <= number && number <= ranges[i].high))
            return -1;
        if (config_member(b, &opened, ranges[i].key, text, size) < 0) return -1;
    }
    if (at[N] != NULL && !is_literal(at[N], end, "null")) {
        if (read_int(at[N], end, &integer, &text, &size) < 0 || integer < 1 || integer > 8) return -1;
        if (config_member(b, &opened, "candidateCount", text, size) < 0) return -1;
    }
    if (at[SEED] != NULL && !is_literal(at[SEED], end, "null")) {  /* 18 digits are within the int64 range */
        if (read_int(at[SEED], end, &integer, &text, &size) < 0) return -1;
        if (config_member(b, &opened, "seed", text, size) < 0) return -1;
    }
    if (at[STOP] != NULL && !is_literal(at[STOP], end, "null")) {
        Cursor c = {at[STOP], end, 2};
        if (*c.p == '"') {
            if (config_member(b, &opened, "stopSequences", (ptr)"[", 1) < 0 || copy_string(&c, b) < 0 ||
                PUT(b, "]") < 0)
                return -1;
        } else {
            int more = enter(&c, '[', ']'), stops = 0;
            if (more < 0) return -1;
            if (more == 0) {
                if (config_member(b, &opened, "stopSequences", (ptr)"[", 1) < 0) return -1;
                do {
                    if (++stops > 5 || (stops > 1 && PUT(b, ",") < 0) || copy_string(&c, b) < 0) return -1;
                } while ((more = next_member(&c, ']')) == 1);
                if (more < 0 || PUT(b, "]") < 0) return -1;
            }
        }
    }
    if (at[REASONING_EFFORT] != NULL && !is_literal(at[REASONING_EFFORT], end, "null")) {
        static const struct { const char *effort, *budget; } budgets[] = {
            {"none", "0"}, {"minimal", "0"}, {"low", "1024"}, {"medium", "8192"}, {"high", "24576"},
        };
        const char *budget = NULL;
        for (size_t i = 0; i < sizeof budgets / sizeof budgets[0] && budget == NULL; i++)
            if (is_plain(at[REASONING_EFFORT], end, budgets[i].effort)) budget = budgets[i].budget;
        if (budget == NULL || config_member(b, &opened, "thinkingConfig", (ptr)"{\"thinkingBudget\":", 18) < 0 ||
            put(b, budget, strlen(budget)) < 0 || PUT(b, "}") < 0)
            return -1;
    }
    return opened && PUT(b, "}") < 0 ? -1 : 0;
}

static Messages parsed;  /* static: it is large, and the GIL is held throughout */

/* The body, at its '{': each field's value noted, the messages read, in one pass. */
static int read_body(Cursor *c, ptr *at, Messages *m) {
    int more = enter(c, '{', '}');
    if (more != 0) return -1;
    do {
        ptr key;
        Py_ssize_t size;
        int field = 0;
        if (read_key(c, &key, &size) < 0) return -1;
        while (field < FIELDS && !((size_t)size == strlen(FIELD_NAMES[field]) &&
                                   memcmp(key, FIELD_NAMES[field], (size_t)size) == 0))
            field++;
        if (field == FIELDS || at[field] != NULL) return -1;
        at[field] = c->p;
        if ((field == MESSAGES ? read_messages(c, m) : skip_value(c)) < 0) return -1;
    } while ((more = next_member(c, '}')) == 1);
    return more;
}

/* The request of a read body: checked, and written after `{"custom_id":...,"request":`. */
static int write_request(ptr *at, ptr end, const Messages *m, Py_ssize_t line, Buf *b) {
    if (at[MESSAGES] == NULL) return -1;
    for (int field = RESPONSE_FORMAT; field <= TOOL_CHOICE; field++)
        if (at[field] != NULL && !is_literal(at[field], end, "null")) return -1;
    for (int field = USER_ID; field <= METADATA; field++)
        if (at[field] != NULL && harmless_value(at[field], end) < 0) return -1;
    for (int field = STORE; field <= LOGPROBS; field++)
        if (at[field] != NULL && !is_literal(at[field], end, "false")) return -1;
    if (at[PARALLEL_TOOL_CALLS] != NULL && !is_literal(at[PARALLEL_TOOL_CALLS], end, "true")) return -1;
    int comma = 0, contents = 0;
    if (PUT(b, "{\"contents\":[") < 0) return -1;
    for (int i = 0; i < m->message_count; i++) {
        const Message *message = &m->messages[i];
        if (message->role == SYSTEM) continue;
        int first = 0;
        if ((contents++ && PUT(b, ",") < 0) ||
            (message->role == USER ? PUT(b, "{\"role\":\"user\",\"parts\":[")
                                   : PUT(b, "{\"role\":\"model\",\"parts\":[")) < 0 ||
            write_parts(m, message, b, &first) < 0 || PUT(b, "]}") < 0)
            return -1;
    }
    if (contents == 0 || PUT(b, "]") < 0) return -1;
    for (int i = 0; i < m->message_count; i++) {
        const Message *message = &m->messages[i];
        if (message->role != SYSTEM) continue;
        if (!comma && PUT(b, ",\"systemInstruction\":{\"parts\":[") < 0) return -1;
        if (write_parts(m, message, b, &comma) < 0) return -1;
    }
    if (comma && PUT(b, "]}") < 0) return -1;
    if (generation_config(at, end, b) < 0) return -1;
    char label[48];
    int size = snprintf(label, sizeof label, ",\"labels\":{\"vbp_line\":\"%zd\"}}", line);
    return put(b, label, (size_t)size);
}

/* The whole line; 0 when claimed, its converted line then appended to `out` (else `out` holds part of it). */
static int convert_line(ptr start, ptr end, Py_ssize_t line, ptr *custom_id, Py_ssize_t *custom_id_size, ptr *model,
                        Py_ssize_t *model_size) {
    if (!utf8_valid(start, end)) return -1;
    Cursor c = {start, end, 0};
    ptr fields[4] = {NULL};  /* custom_id, method, url, body */
    ptr at[FIELDS] = {NULL};  /* the body's */
    static const char *const names[4] = {"custom_id", "method", "url", "body"};
    skip_ws(&c);
    int more = enter(&c, '{', '}');
    if (more != 0) return -1;
    do {
        ptr key;
        Py_ssize_t size;
        int field = 0;
        if (read_key(&c, &key, &size) < 0) return -1;
        while (field < 4 && !((size_t)size == strlen(names[field]) && memcmp(key, names[field], (size_t)size) == 0))
            field++;
        if (field == 4 || fields[field] != NULL) return -1;
        fields[field] = c.p;
        if ((field == 3 ? read_body(&c, at, &parsed) : skip_value(&c)) < 0) return -1;
    } while ((more = next_member(&c, '}')) == 1);
    skip_ws(&c);
    if (more < 0 || c.p != end || !fields[0] || !fields[1] || !fields[2] || !fields[3] || at[MODEL] == NULL) return -1;
    if (!is_plain(fields[1], end, "POST") ||
        !(is_plain(fields[2], end, "/v1/chat/completions") || is_plain(fields[2], end, "/chat/completions")))
        return -1;
    Cursor id = {fields[0], end, 0}, name = {at[MODEL], end, 0};
    if (read_plain(&id, custom_id, custom_id_size) < 0 || *custom_id_size == 0 ||
        read_plain(&name, model, model_size) < 0 || *model_size == 0)
        return -1;
    if (PUT(&out, "{\"custom_id\":") < 0 || put(&out, fields[0], (size_t)(id.p - fields[0])) < 0 ||
        PUT(&out, ",\"request\":") < 0 || write_request(at, end, &parsed, line, &out) < 0)
        return -1;
    return PUT(&out, "}");
}

static PyObject *chat_lines(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer view, file_model;
    Py_ssize_t pos, line;
    if (!PyArg_ParseTuple(args, "y*ns*n", &view, &pos, &file_model, &line)) return NULL;
    PyObject *ids = PyList_New(0), *result = NULL;
    if (ids == NULL || pos < 0 || pos > view.len) {
        if (ids != NULL) PyErr_SetString(PyExc_ValueError, "pos must lie within the buffer");
        goto done;
    }
    ptr base = (ptr)view.buf, end = base + view.len;
    out.size = 0;
    for (;;) {
        ptr start = base + pos, newline = memchr(start, '\n', (size_t)(end - start));
        if (newline == NULL) break;
        ptr stop = newline > start && newline[-1] == '\r' ? newline - 1 : newline;
        ptr custom_id, model;
        Py_ssize_t custom_id_size, model_size;
        size_t mark = out.size;
        if (convert_line(start, stop, line, &custom_id, &custom_id_size, &model, &model_size) < 0 ||
            model_size != file_model.len || memcmp(model, file_model.buf, (size_t)model_size) != 0 ||
            PUT(&out, "\n") < 0) {
            out.size = mark;
            break;
        }
        PyObject *id = PyUnicode_DecodeUTF8((const char *)custom_id, custom_id_size, "strict");
        if (id == NULL || PyList_Append(ids, id) < 0) {
            Py_XDECREF(id);
            goto done;
        }
        Py_DECREF(id);
        pos = newline + 1 - base;
        line++;
    }
    result = Py_BuildValue("(nOy#)", pos, ids, out.data != NULL ? out.data : "", (Py_ssize_t)out.size);
done:
    Py_XDECREF(ids);
    if (out.capacity > (1 << 24)) {  /* a buffer grown by a huge block is not kept */
        free(out.data);
        out.data = NULL;
        out.size = out.capacity = 0;
    }
    PyBuffer_Release(&file_model);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"chat_lines", chat_lines, METH_VARARGS,
     "chat_lines(buf, pos, model, line) -> (pos, custom_ids, converted)\n\n"
     "Convert the whole lines of buf from pos on (the first numbered `line`) while each has the common shape and\n"
     "body.model `model`; return where it stopped, the converted lines' custom_ids and the converted lines."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_chatscan", "The fast path of the OpenAI door's chat line conversion.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__chatscan(void) {
    json_tables_init();
    return PyModule_Create(&module);
}
