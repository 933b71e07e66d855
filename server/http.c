/* http.c — strict HTTP/1.1 request parser (RFC 9110/9112).
 *
 * The parser reads one request from the front of a connection's input
 * buffer: it either reports that more bytes are needed, or returns the
 * request and how many bytes it took (the rest is the next, pipelined
 * request), or an error status. It never reads past the buffer, allocates
 * only the decoded body, and refuses anything ambiguous that proxies are
 * known to disagree on (request smuggling): Content-Length together with
 * Transfer-Encoding, conflicting Content-Lengths, obs-fold, bare LF. */
#include "server/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

static bool is_tchar(unsigned char c) {
    /* RFC 9110 token characters */
    if (c >= '0' && c <= '9') return true;
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_vchar_or_ws(unsigned char c) { return c == ' ' || c == '\t' || (c >= 0x21 && c != 0x7f); }

static int fail(http_request *r, int status, const char *msg) {
    r->status = status;
    snprintf(r->error, sizeof r->error, "%s", msg);
    return HTTP_ERROR;
}

/* Position of the first CRLF at or after `from`, or -1; a bare LF is an
 * error reported through *bare_lf. */
static long find_crlf(const char *b, size_t n, size_t from, bool *bare_lf) {
    for (size_t i = from; i < n; i++) {
        if (b[i] == '\n') {
            if (i == 0 || b[i - 1] != '\r') { *bare_lf = true; return -1; }
            return (long)i - 1;
        }
    }
    return -1;
}

void http_request_free(http_request *r) {
    free(r->body);
    memset(r, 0, sizeof *r);
}

const char *http_header_get(const http_request *r, const char *name) {
    for (int i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->headers[i].name, name) == 0) return r->headers[i].value;
    return NULL;
}

/* Parses "chunked" body starting at buf[off]. On success sets *end to the
 * offset just past the trailers and fills the body. */
static int parse_chunked(http_request *r, const char *b, size_t n, size_t off, const http_limits *lim, size_t *end) {
    size_t cap = 0, len = 0;
    char *body = NULL;
    bool bare = false;
    for (;;) {
        long eol = find_crlf(b, n, off, &bare);
        if (bare) { free(body); return fail(r, 400, "bare LF in chunked body"); }
        if (eol < 0) {
            free(body);
            if (n - off > 1024) return fail(r, 400, "chunk size line too long");
            return HTTP_NEED_MORE;
        }
        /* chunk-size [; ext] */
        size_t i = off, size = 0;
        int digits = 0;
        while (i < (size_t)eol) {
            char c = b[i];
            int v = (c >= '0' && c <= '9') ? c - '0' : ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') ? (c | 0x20) - 'a' + 10 : -1;
            if (v < 0) break;
            if (++digits > 15) { free(body); return fail(r, 400, "chunk size too large"); }
            size = size * 16 + (size_t)v;
            i++;
        }
        if (digits == 0) { free(body); return fail(r, 400, "bad chunk size"); }
        if (i < (size_t)eol && b[i] != ';') { free(body); return fail(r, 400, "bad chunk size"); }
        for (; i < (size_t)eol; i++)
            if (!is_vchar_or_ws((unsigned char)b[i])) { free(body); return fail(r, 400, "bad chunk extension"); }
        off = (size_t)eol + 2;
        if (size == 0) break;
        if (len + size > lim->max_body) { free(body); return fail(r, 413, "request body too large"); }
        if (n - off < size + 2) { free(body); return HTTP_NEED_MORE; }
        if (b[off + size] != '\r' || b[off + size + 1] != '\n') { free(body); return fail(r, 400, "chunk data not followed by CRLF"); }
        if (len + size + 1 > cap) {
            size_t nc = cap ? cap : 4096;
            while (nc < len + size + 1) nc *= 2;
            char *nb = realloc(body, nc);
            if (!nb) { free(body); return fail(r, 500, "out of memory"); }
            body = nb;
            cap = nc;
        }
        memcpy(body + len, b + off, size);
        len += size;
        off += size + 2;
    }
    /* trailer fields, then an empty line */
    for (int n_trailers = 0;; n_trailers++) {
        long eol = find_crlf(b, n, off, &bare);
        if (bare) { free(body); return fail(r, 400, "bare LF in trailers"); }
        if (eol < 0) { free(body); return (n - off > lim->max_header_bytes) ? fail(r, 431, "trailers too large") : HTTP_NEED_MORE; }
        if ((size_t)eol == off) { off += 2; break; }
        if (n_trailers >= lim->max_headers) { free(body); return fail(r, 431, "too many trailer fields"); }
        off = (size_t)eol + 2; /* trailers are accepted and ignored */
    }
    if (!body) body = malloc(1);
    if (!body) return fail(r, 500, "out of memory");
    body[len] = 0;
    r->body = body;
    r->body_len = len;
    *end = off;
    return HTTP_OK;
}

int http_parse_request(const char *b, size_t n, const http_limits *lim, http_request *r, size_t *consumed) {
    memset(r, 0, sizeof *r);
    *consumed = 0;
    bool bare = false;
    /* Tolerate empty lines before a request (RFC 9112 2.2). */
    size_t start = 0;
    while (start + 1 < n && b[start] == '\r' && b[start + 1] == '\n') start += 2;
    long eol = find_crlf(b, n, start, &bare);
    if (bare) return fail(r, 400, "bare LF in request line");
    if (eol < 0) return (n - start > lim->max_header_bytes) ? fail(r, 431, "request line too long") : HTTP_NEED_MORE;
    /* the whole head must be present before we interpret it */
    size_t head_end = 0;
    for (size_t i = start; i + 3 < n; i++) {
        if (b[i] == '\r' && b[i + 1] == '\n' && b[i + 2] == '\r' && b[i + 3] == '\n') { head_end = i + 4; break; }
        if (i - start > lim->max_header_bytes) return fail(r, 431, "request header fields too large");
    }
    if (!head_end) {
        for (size_t i = start; i < n; i++)
            if (b[i] == '\n' && (i == 0 || b[i - 1] != '\r')) return fail(r, 400, "bare LF in request head");
        return (n - start > lim->max_header_bytes) ? fail(r, 431, "request header fields too large") : HTTP_NEED_MORE;
    }
    if (head_end - start > lim->max_header_bytes) return fail(r, 431, "request header fields too large");

    /* request line: method SP target SP HTTP/1.x */
    size_t i = start, line_end = (size_t)eol;
    size_t m0 = i;
    while (i < line_end && is_tchar((unsigned char)b[i])) i++;
    if (i == m0 || i >= line_end || b[i] != ' ') return fail(r, 400, "malformed request line");
    if (i - m0 >= sizeof r->method) return fail(r, 501, "method not implemented");
    memcpy(r->method, b + m0, i - m0);
    i++;
    size_t t0 = i;
    while (i < line_end && b[i] != ' ') {
        unsigned char c = (unsigned char)b[i];
        if (c <= 0x20 || c == 0x7f) return fail(r, 400, "invalid character in request target");
        i++;
    }
    if (i == t0 || i >= line_end) return fail(r, 400, "malformed request line");
    if (i - t0 >= sizeof r->target) return fail(r, 414, "URI too long");
    if (b[t0] != '/' && !(i - t0 == 1 && b[t0] == '*')) return fail(r, 400, "request target must be origin-form");
    memcpy(r->target, b + t0, i - t0);
    i++;
    if (line_end - i != 8 || memcmp(b + i, "HTTP/1.", 7) != 0) {
        if (line_end - i >= 5 && memcmp(b + i, "HTTP/", 5) == 0) return fail(r, 505, "HTTP version not supported");
        return fail(r, 400, "malformed request line");
    }
    char minor = b[i + 7];
    if (minor != '0' && minor != '1') return fail(r, 505, "HTTP version not supported");
    r->version_minor = minor - '0';

    /* header fields */
    size_t off = line_end + 2;
    long content_length = -1;
    bool te_chunked = false, has_host = false;
    int conn_close = 0, conn_keep = 0;
    while (off < head_end - 2) {
        long le = find_crlf(b, head_end, off, &bare);
        if (bare || le < 0) return fail(r, 400, "bare LF in header field");
        size_t e = (size_t)le;
        if (b[off] == ' ' || b[off] == '\t') return fail(r, 400, "obsolete line folding in header field");
        size_t k = off;
        while (k < e && is_tchar((unsigned char)b[k])) k++;
        if (k == off || k >= e || b[k] != ':') return fail(r, 400, "malformed header field");
        if (r->n_headers >= lim->max_headers || r->n_headers >= HTTP_MAX_HEADERS) return fail(r, 431, "too many header fields");
        size_t v0 = k + 1, v1 = e;
        while (v0 < v1 && (b[v0] == ' ' || b[v0] == '\t')) v0++;
        while (v1 > v0 && (b[v1 - 1] == ' ' || b[v1 - 1] == '\t')) v1--;
        for (size_t x = v0; x < v1; x++)
            if (!is_vchar_or_ws((unsigned char)b[x]) && (unsigned char)b[x] < 0x80) return fail(r, 400, "invalid character in header value");
        http_header *h = &r->headers[r->n_headers++];
        size_t nl = k - off, vl = v1 - v0;
        if (nl >= sizeof h->name || vl >= sizeof h->value) return fail(r, 431, "header field too large");
        memcpy(h->name, b + off, nl);
        h->name[nl] = 0;
        memcpy(h->value, b + v0, vl);
        h->value[vl] = 0;
        if (strcasecmp(h->name, "content-length") == 0) {
            if (vl == 0 || vl > 15) return fail(r, 400, "bad Content-Length");
            long v = 0;
            for (size_t x = 0; x < vl; x++) {
                if (h->value[x] < '0' || h->value[x] > '9') return fail(r, 400, "bad Content-Length");
                v = v * 10 + (h->value[x] - '0');
            }
            if (content_length >= 0 && content_length != v) return fail(r, 400, "conflicting Content-Length fields");
            content_length = v;
        } else if (strcasecmp(h->name, "transfer-encoding") == 0) {
            if (strcasecmp(h->value, "chunked") != 0 || te_chunked)
                return fail(r, 501, "only a single 'chunked' transfer coding is supported");
            te_chunked = true;
        } else if (strcasecmp(h->name, "host") == 0) {
            if (has_host) return fail(r, 400, "more than one Host field");
            has_host = true;
        } else if (strcasecmp(h->name, "connection") == 0) {
            if (strcasestr(h->value, "close")) conn_close = 1;
            if (strcasestr(h->value, "keep-alive")) conn_keep = 1;
        }
        off = e + 2;
    }
    if (r->version_minor == 1 && !has_host) return fail(r, 400, "missing Host field");
    if (te_chunked && content_length >= 0) return fail(r, 400, "both Content-Length and Transfer-Encoding");
    if (te_chunked && r->version_minor == 0) return fail(r, 400, "chunked transfer coding in HTTP/1.0");
    r->keep_alive = r->version_minor == 1 ? !conn_close : (conn_keep && !conn_close);

    size_t end = head_end;
    if (te_chunked) {
        int rc = parse_chunked(r, b, n, head_end, lim, &end);
        if (rc != HTTP_OK) return rc;
    } else if (content_length > 0) {
        if ((size_t)content_length > lim->max_body) return fail(r, 413, "request body too large");
        if (n - head_end < (size_t)content_length) return HTTP_NEED_MORE;
        r->body = malloc((size_t)content_length + 1);
        if (!r->body) return fail(r, 500, "out of memory");
        memcpy(r->body, b + head_end, (size_t)content_length);
        r->body[content_length] = 0;
        r->body_len = (size_t)content_length;
        end = head_end + (size_t)content_length;
    }
    /* split path and query */
    char *q = strchr(r->target, '?');
    size_t pl = q ? (size_t)(q - r->target) : strlen(r->target);
    memcpy(r->path, r->target, pl);
    r->path[pl] = 0;
    r->query = q ? q + 1 - r->target : -1;
    *consumed = end;
    return HTTP_OK;
}

const char *http_status_text(int status) {
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}
