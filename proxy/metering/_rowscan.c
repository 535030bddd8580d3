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

#include "../_usagescan.h"

enum {
    MAX_VERSIONS = 16,  /* distinct modelVersions per call; the 17th ends the call (Python continues) */
    /* per tier: rows; the tokens prompt, cached, candidates, thoughts, tool-use prompt, audio prompt, audio
       cached (JobTotals' order); the units billed as input, audio input, cached input, cached audio input,
       output (cost.UNIT_RATES' order) */
    SUMS = 13,
};
static const uint64_t SUM_GUARD = (uint64_t)1 << 62;  /* end the call once a sum passes this */

typedef struct {
    TokenCounts t;
    ptr version;  /* modelVersion's bytes in the buffer, or NULL when the response has none */
    Py_ssize_t version_len;
} Row;

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
            if (seen_usage++ || read_usage(c, &row->t) < 0) return -1;
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
    uint64_t cached = row->t.cached, audio_prompt = row->t.audio_prompt, audio_cached = row->t.audio_cached;
    uint64_t uncached = row->t.prompt > cached ? row->t.prompt - cached : 0;
    uint64_t other_input = row->t.tool_use;
    units[4] = row->t.candidates + row->t.thoughts;
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
        uint64_t *sums = tiers[row.t.prompt > above ? 1 : 0];
        uint64_t units[5];
        row_units(&row, units);
        sums[0] += 1;
        sums[1] += row.t.prompt;
        sums[2] += row.t.cached;
        sums[3] += row.t.candidates;
        sums[4] += row.t.thoughts;
        sums[5] += row.t.tool_use;
        sums[6] += row.t.audio_prompt;
        sums[7] += row.t.audio_cached;
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
        record[7] = (int64_t)row.t.prompt;
        record[8] = (int64_t)row.t.cached;
        record[9] = (int64_t)row.t.candidates;
        record[10] = (int64_t)row.t.thoughts;
        record[11] = (int64_t)row.t.tool_use;
        record[12] = (int64_t)row.t.audio_prompt;
        record[13] = (int64_t)row.t.audio_cached;
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

/* The per-line export's records (`row_tails`): the tail of each row's record (what follows its line number),
   written from the per-row mode's records with the exact cost, so no Python runs per row but the key's hash.
   The template comes from Python (proxy/reports/line_records.py), the record formats' one definition: nine
   literal pieces around the fields key, status, five token counts and cost, the quote put around a present key
   or cost, the text of an absent one, the key's prefix, and the names of the two statuses. */

enum { TAIL_PIECES = 9, RATE_FIELDS = 11 };

typedef struct {
    const char *text[TAIL_PIECES];
    Py_ssize_t size[TAIL_PIECES];
    const char *quote, *none, *prefix, *status[2];
    Py_ssize_t quote_size, none_size, prefix_size, status_size[2];
} Template;

static int bytes_of(PyObject *item, const char **text, Py_ssize_t *size) {
    if (!PyBytes_Check(item)) {
        PyErr_SetString(PyExc_TypeError, "the template holds bytes only");
        return -1;
    }
    *text = PyBytes_AS_STRING(item);
    *size = PyBytes_GET_SIZE(item);
    return 0;
}

static int read_template(PyObject *spec, Template *t) {
    PyObject *pieces, *quote, *none, *prefix, *statuses;
    if (!PyArg_ParseTuple(spec, "O!SSSO!", &PyTuple_Type, &pieces, &quote, &none, &prefix, &PyTuple_Type,
                          &statuses))
        return -1;
    if (PyTuple_GET_SIZE(pieces) != TAIL_PIECES || PyTuple_GET_SIZE(statuses) != 2) {
        PyErr_SetString(PyExc_ValueError, "the template needs 9 pieces and 2 statuses");
        return -1;
    }
    for (int i = 0; i < TAIL_PIECES; i++)
        if (bytes_of(PyTuple_GET_ITEM(pieces, i), &t->text[i], &t->size[i]) < 0) return -1;
    for (int i = 0; i < 2; i++)
        if (bytes_of(PyTuple_GET_ITEM(statuses, i), &t->status[i], &t->status_size[i]) < 0) return -1;
    return bytes_of(quote, &t->quote, &t->quote_size) < 0 || bytes_of(none, &t->none, &t->none_size) < 0 ||
           bytes_of(prefix, &t->prefix, &t->prefix_size) < 0 ? -1 : 0;
}

static inline char *put(char *out, const char *text, Py_ssize_t size) {
    memcpy(out, text, (size_t)size);
    return out + size;
}

static char *put_uint(char *out, uint64_t value) {
    char digits[20];
    int n = 0;
    do digits[n++] = (char)('0' + value % 10); while ((value /= 10) != 0);
    while (n) *out++ = digits[--n];
    return out;
}

/* pUSD as `proxy.money.format_usd` prints it: the whole dollars, then the 12 decimals without their trailing
   zeros, at least 2. */
static char *put_usd(char *out, uint64_t pico) {
    static const uint64_t PICO = 1000000000000ULL;
    out = put_uint(out, pico / PICO);
    *out++ = '.';
    uint64_t frac = pico % PICO;
    char decimals[12];
    for (int i = 11; i >= 0; i--, frac /= 10) decimals[i] = (char)('0' + frac % 10);
    int keep = 12;
    while (keep > 2 && decimals[keep - 1] == '0') keep--;
    return put(out, decimals, keep);
}

/* A succeeded row's cost at its tier's rates: 0 when it does not fit 64 bits (Python prices that row). */
static int row_cost(const Row *row, const uint64_t *rates, uint64_t *cost) {
    const uint64_t *tier = rates + (row->t.prompt > rates[0] ? 6 : 1);
    uint64_t units[5], sum = 0, part;
    row_units(row, units);
    for (int i = 0; i < 5; i++)
        if (__builtin_mul_overflow(units[i], tier[i], &part) || __builtin_add_overflow(sum, part, &sum)) return 0;
    *cost = sum;
    return 1;
}

static const char HEX[] = "0123456789abcdef";

static PyObject *row_tails(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *records, *digests, *spec, *rate_spec;
    if (!PyArg_ParseTuple(args, "SO!O!O", &records, &PyList_Type, &digests, &PyTuple_Type, &spec, &rate_spec))
        return NULL;
    Py_ssize_t count = PyBytes_GET_SIZE(records) / (ROW_FIELDS * (Py_ssize_t)sizeof(int64_t));
    if (PyBytes_GET_SIZE(records) % (ROW_FIELDS * (Py_ssize_t)sizeof(int64_t)) || PyList_GET_SIZE(digests) != count) {
        PyErr_SetString(PyExc_ValueError, "records and digests do not match");
        return NULL;
    }
    Template t;
    if (read_template(spec, &t) < 0) return NULL;
    int priced = rate_spec != Py_None;
    uint64_t rates[RATE_FIELDS] = {0};  /* above, then the base tier's and the long tier's rates (cost.UNIT_RATES) */
    if (priced) {
        if (!PyTuple_Check(rate_spec) || PyTuple_GET_SIZE(rate_spec) != RATE_FIELDS) {
            PyErr_SetString(PyExc_ValueError, "rates are None or a tuple of 11 ints");
            return NULL;
        }
        for (int i = 0; i < RATE_FIELDS; i++) {
            rates[i] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(rate_spec, i));
            if (PyErr_Occurred()) return NULL;
        }
    }
    /* room for the longest tail: the pieces, a key (or its absence), a status, five counts of at most 20 digits,
       a cost (at most 20 + 1 + 12 characters) or its absence */
    Py_ssize_t longest = 4 * t.quote_size + t.prefix_size + 32 + 2 * t.none_size + t.status_size[0] +
                         t.status_size[1] + 5 * 20 + 33;
    for (int i = 0; i < TAIL_PIECES; i++) longest += t.size[i];
    char *scratch = PyMem_Malloc((size_t)longest);
    PyObject *out = scratch != NULL ? PyList_New(count) : PyErr_NoMemory();
    const int64_t *fields = (const int64_t *)PyBytes_AS_STRING(records);
    for (Py_ssize_t i = 0; out != NULL && i < count; i++) {
        const int64_t *record = fields + i * ROW_FIELDS;
        int failed = record[6] != 0;
        Row row = {0};
        if (!failed)
            row = (Row){{(uint64_t)record[7], (uint64_t)record[8], (uint64_t)record[9], (uint64_t)record[10],
                         (uint64_t)record[11], (uint64_t)record[12], (uint64_t)record[13]}, NULL, 0};
        uint64_t cost = 0;
        if (priced && !failed && !row_cost(&row, rates, &cost)) {
            Py_INCREF(Py_None);
            PyList_SET_ITEM(out, i, Py_None);
            continue;
        }
        PyObject *digest = PyList_GET_ITEM(digests, i);
        char *at = put(scratch, t.text[0], t.size[0]);
        if (digest == Py_None) {
            at = put(at, t.none, t.none_size);
        } else if (PyBytes_Check(digest) && PyBytes_GET_SIZE(digest) >= 16) {
            const unsigned char *hash = (const unsigned char *)PyBytes_AS_STRING(digest);
            at = put(at, t.quote, t.quote_size);
            at = put(at, t.prefix, t.prefix_size);
            for (int b = 0; b < 16; b++) {
                *at++ = HEX[hash[b] >> 4];
                *at++ = HEX[hash[b] & 15];
            }
            at = put(at, t.quote, t.quote_size);
        } else {
            PyErr_SetString(PyExc_TypeError, "a digest is None or bytes of at least 16");
            Py_CLEAR(out);
            break;
        }
        at = put(at, t.text[1], t.size[1]);
        at = put(at, t.status[failed], t.status_size[failed]);
        const uint64_t counts[5] = {row.t.prompt, row.t.cached, row.t.candidates, row.t.thoughts, row.t.tool_use};
        for (int k = 0; k < 5; k++) {
            at = put(at, t.text[2 + k], t.size[2 + k]);
            at = put_uint(at, counts[k]);
        }
        at = put(at, t.text[7], t.size[7]);
        if (priced) {
            at = put(at, t.quote, t.quote_size);
            at = put_usd(at, cost);
            at = put(at, t.quote, t.quote_size);
        } else {
            at = put(at, t.none, t.none_size);
        }
        at = put(at, t.text[8], t.size[8]);
        PyObject *tail = PyBytes_FromStringAndSize(scratch, at - scratch);
        if (tail == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, i, tail);
    }
    PyMem_Free(scratch);
    return out;
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
    {"row_tails", row_tails, METH_VARARGS,
     "row_tails(records, digests, template, rates) -> [bytes | None]\n\n"
     "The record tail of each row of `records` (scan_rows'), its key from `digests` (the first 16 bytes in hex, or\n"
     "the template's text of an absent key for None), its exact cost at `rates` (above, 5 base and 5 long-context\n"
     "rates in pUSD per unit; None: unpriced); None for a row whose cost does not fit 64 bits."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rowscan", "The plain-row accelerator of the metering scanner.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__rowscan(void) {
    json_tables_init();
    return PyModule_Create(&module);
}
