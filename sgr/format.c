/* format.c — checkers for the JSON Schema "format" values (RFC 3339 dates
 * and times, ISO 8601 durations, RFC 5321 e-mail, RFC 1123 host names,
 * IPv4/IPv6, RFC 3986 URIs, RFC 4122 UUIDs, ECMA-262 regexes, RFC 6901
 * pointers). */
#include <stdlib.h>
#include <string.h>

#include "sgr.h"

static bool isdig(char c) { return c >= '0' && c <= '9'; }
static bool isalph(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool ishex(char c) { return isdig(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

static int num(const char *s, size_t n) {
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdig(s[i])) return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static bool check_date(const char *s, size_t n) {
    if (n != 10 || s[4] != '-' || s[7] != '-') return false;
    int y = num(s, 4), m = num(s + 5, 2), d = num(s + 8, 2);
    if (y < 0 || m < 1 || m > 12 || d < 1) return false;
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int md = mdays[m - 1];
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) md = 29;
    return d <= md;
}

static bool check_time(const char *s, size_t n) {
    if (n < 9 || s[2] != ':' || s[5] != ':') return false;
    int h = num(s, 2), mi = num(s + 3, 2), se = num(s + 6, 2);
    if (h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 || se > 60) return false;
    size_t i = 8;
    if (i < n && s[i] == '.') {
        i++;
        size_t st = i;
        while (i < n && isdig(s[i])) i++;
        if (i == st) return false;
    }
    if (i >= n) return false;
    int off = 0;
    if (s[i] == 'Z' || s[i] == 'z') {
        if (i + 1 != n) return false;
    } else if (s[i] == '+' || s[i] == '-') {
        if (n - i != 6 || s[i + 3] != ':') return false;
        int oh = num(s + i + 1, 2), om = num(s + i + 4, 2);
        if (oh < 0 || oh > 23 || om < 0 || om > 59) return false;
        off = (oh * 60 + om) * (s[i] == '+' ? 1 : -1);
    } else return false;
    if (se == 60) {
        int utc = ((h * 60 + mi - off) % 1440 + 1440) % 1440;
        if (utc != 23 * 60 + 59) return false;
    }
    return true;
}

static bool check_datetime(const char *s, size_t n) {
    if (n < 20 || (s[10] != 'T' && s[10] != 't')) return false;
    return check_date(s, 10) && check_time(s + 11, n - 11);
}

static bool check_duration(const char *s, size_t n) {
    if (n < 2 || s[0] != 'P') return false;
    size_t i = 1;
    const char *date_units = "YMD", *time_units = "HMS";
    int last = -1, count = 0;
    bool in_time = false, week = false;
    while (i < n) {
        if (s[i] == 'T') {
            if (in_time) return false;
            in_time = true;
            last = -1;
            i++;
            if (i >= n) return false;
            continue;
        }
        size_t st = i;
        while (i < n && isdig(s[i])) i++;
        if (i == st || i >= n) return false;
        char u = s[i++];
        if (u == 'W') {
            if (in_time || count) return false;
            week = true;
            count++;
            continue;
        }
        if (week) return false;
        const char *units = in_time ? time_units : date_units;
        const char *p = strchr(units, u);
        if (!p || u == 0) return false;
        int k = (int)(p - units);
        if (k <= last || (last >= 0 && k != last + 1)) return false; /* in order, none skipped (RFC 3339 ABNF) */
        last = k;
        count++;
    }
    if (in_time && last < 0) return false;
    return count > 0;
}

static bool check_ipv4(const char *s, size_t n) {
    int parts = 0;
    size_t i = 0;
    while (parts < 4) {
        size_t st = i;
        while (i < n && isdig(s[i])) i++;
        size_t l = i - st;
        if (l == 0 || l > 3 || (l > 1 && s[st] == '0')) return false;
        if (num(s + st, l) > 255) return false;
        parts++;
        if (parts < 4) {
            if (i >= n || s[i] != '.') return false;
            i++;
        }
    }
    return i == n;
}

static bool check_ipv6(const char *s, size_t n) {
    if (n < 2) return false;
    int groups = 0;
    bool dbl = false;
    size_t i = 0;
    if (s[0] == ':') {
        if (s[1] != ':') return false;
        dbl = true;
        i = 2;
        if (i == n) return true;
    }
    while (i < n) {
        size_t st = i;
        while (i < n && ishex(s[i])) i++;
        size_t l = i - st;
        if (i < n && s[i] == '.') {
            /* trailing IPv4 */
            if (!check_ipv4(s + st, n - st)) return false;
            groups += 2;
            i = n;
            break;
        }
        if (l == 0 || l > 4) return false;
        groups++;
        if (i == n) break;
        if (s[i] != ':') return false;
        i++;
        if (i < n && s[i] == ':') {
            if (dbl) return false;
            dbl = true;
            i++;
            if (i == n) break;
        } else if (i == n) return false;
    }
    return dbl ? groups <= 7 : groups == 8;
}

static bool check_hostname(const char *s, size_t n) {
    if (n == 0 || n > 253) return false;
    size_t st = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '.') {
            size_t l = i - st;
            if (l == 0 || l > 63 || s[st] == '-' || s[i - 1] == '-') return false;
            /* "xn--" is the only allowed form with "--" in positions 3-4 */
            if (l >= 4 && s[st + 2] == '-' && s[st + 3] == '-' &&
                !((s[st] | 0x20) == 'x' && (s[st + 1] | 0x20) == 'n')) return false;
            st = i + 1;
            continue;
        }
        if (!isalph(s[i]) && !isdig(s[i]) && s[i] != '-') return false;
    }
    return true;
}

static bool check_email(const char *s, size_t n) {
    size_t at = n;
    if (n && s[0] == '"') {
        size_t i = 1;
        while (i < n && s[i] != '"') { if (s[i] == '\\') i++; i++; }
        if (i >= n || i + 1 >= n || s[i + 1] != '@') return false;
        at = i + 1;
    } else {
        for (size_t i = 0; i < n; i++) if (s[i] == '@') at = i;
        if (at == n || at == 0) return false;
        const char *ok = "!#$%&'*+-/=?^_`{|}~.";
        for (size_t i = 0; i < at; i++) {
            unsigned char c = (unsigned char)s[i];
            if (!isalph((char)c) && !isdig((char)c) && !strchr(ok, c) && c < 0x80) return false;
            if (c == '.' && (i == 0 || i == at - 1 || s[i + 1] == '.')) return false;
        }
    }
    const char *d = s + at + 1;
    size_t dn = n - at - 1;
    if (dn >= 2 && d[0] == '[' && d[dn - 1] == ']') {
        if (dn > 7 && strncmp(d + 1, "IPv6:", 5) == 0) return check_ipv6(d + 6, dn - 7);
        return check_ipv4(d + 1, dn - 2);
    }
    return check_hostname(d, dn);
}

static bool check_uuid(const char *s, size_t n) {
    if (n != 36) return false;
    for (size_t i = 0; i < n; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) { if (s[i] != '-') return false; }
        else if (!ishex(s[i])) return false;
    }
    return true;
}

/* RFC 3986 characters allowed in a URI (outside %-escapes). */
static bool uri_char(char c) {
    return isalph(c) || isdig(c) || strchr("-._~:/?#[]@!$&'()*+,;=", c) != NULL;
}

static bool check_uri_ref(const char *s, size_t n, bool need_scheme, bool iri) {
    size_t i = 0;
    while (i < n && (isalph(s[i]) || (i > 0 && (isdig(s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.')))) i++;
    bool scheme = i > 0 && i < n && s[i] == ':';
    if (need_scheme && !scheme) return false;
    size_t hier = scheme ? i + 1 : 0;
    for (size_t k = 0; k < n; k++) {
        char c = s[k];
        if (c == 0) return false;
        if (c == '%') {
            if (k + 2 >= n + 0 || !ishex(s[k + 1]) || !ishex(s[k + 2])) return false;
            k += 2;
            continue;
        }
        if (!uri_char(c) && !(iri && (unsigned char)c >= 0x80)) return false;
    }
    /* authority: [userinfo@]host[:port]; [ ] only around an IP literal */
    if (hier + 1 < n && s[hier] == '/' && s[hier + 1] == '/') {
        size_t a = hier + 2, e = a;
        while (e < n && s[e] != '/' && s[e] != '?' && s[e] != '#') e++;
        size_t h = a;
        for (size_t k = a; k < e; k++) {
            if (s[k] == '@') {
                if (h != a) return false; /* more than one '@' */
                h = k + 1;
            }
        }
        for (size_t k = a; k + 1 < h; k++) if (s[k] == '[' || s[k] == ']') return false; /* userinfo */
        size_t pe = e; /* end of host */
        if (h < e && s[h] == '[') {
            size_t c = h;
            while (c < e && s[c] != ']') c++;
            if (c >= e) return false;
            const char *lit = s + h + 1;
            size_t ln = c - h - 1;
            if (ln > 0 && (lit[0] == 'v' || lit[0] == 'V')) {
                size_t q = 1;
                while (q < ln && ishex(lit[q])) q++;
                if (q == 1 || q >= ln - 1 || lit[q] != '.') return false;
            } else if (!check_ipv6(lit, ln)) return false;
            pe = c + 1;
            if (pe < e && s[pe] != ':') return false;
        } else {
            for (pe = h; pe < e && s[pe] != ':'; pe++)
                if (s[pe] == '[' || s[pe] == ']') return false;
        }
        if (pe < e) { /* port */
            for (size_t k = pe + 1; k < e; k++) if (!isdig(s[k])) return false;
        }
        for (size_t k = e; k < n; k++) if (s[k] == '[' || s[k] == ']') return false;
    } else {
        size_t e = 0;
        while (e < n && s[e] != '#' && s[e] != '?') e++;
        for (size_t k = 0; k < e; k++) if (s[k] == '[' || s[k] == ']') return false;
        if (!scheme) { /* relative-path reference: no ':' in the first segment */
            for (size_t k = 0; k < e && s[k] != '/'; k++) if (s[k] == ':') return false;
        }
    }
    /* at most one '#' */
    const char *h = memchr(s, '#', n);
    if (h && memchr(h + 1, '#', n - (size_t)(h - s) - 1)) return false;
    return true;
}

/* RFC 6570 level 4 syntax. */
static bool check_uri_template(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c == '{') {
            i++;
            if (i < n && strchr("+#./;?&=,!@|", s[i])) i++;
            for (;;) {
                size_t st = i;
                bool dot_ok = false;
                while (i < n) {
                    if (isalph(s[i]) || isdig(s[i]) || s[i] == '_') { i++; dot_ok = true; }
                    else if (s[i] == '%' && i + 2 < n && ishex(s[i + 1]) && ishex(s[i + 2])) { i += 3; dot_ok = true; }
                    else if (s[i] == '.' && dot_ok) { i++; dot_ok = false; }
                    else break;
                }
                if (i == st || !dot_ok) return false;
                if (i < n && s[i] == ':') {
                    size_t d = ++i;
                    while (i < n && isdig(s[i])) i++;
                    if (i == d || i - d > 4 || s[d] == '0') return false;
                } else if (i < n && s[i] == '*') i++;
                if (i < n && s[i] == ',') { i++; continue; }
                if (i < n && s[i] == '}') { i++; break; }
                return false;
            }
            continue;
        }
        if (c < 0x21 || c == 0x7F || strchr("\"<>\\^`|}", (int)c)) return false;
        if (c == '%') {
            if (i + 2 >= n || !ishex(s[i + 1]) || !ishex(s[i + 2])) return false;
            i += 3;
            continue;
        }
        i++;
    }
    return true;
}

static bool check_json_pointer(const char *s, size_t n) {
    if (n == 0) return true;
    if (s[0] != '/') return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '~' && (i + 1 >= n || (s[i + 1] != '0' && s[i + 1] != '1'))) return false;
    return true;
}

static bool check_rel_pointer(const char *s, size_t n) {
    size_t i = 0;
    while (i < n && isdig(s[i])) i++;
    if (i == 0 || (i > 1 && s[0] == '0')) return false;
    if (i < n && (s[i] == '+' || s[i] == '-')) {
        size_t st = ++i;
        while (i < n && isdig(s[i])) i++;
        if (i == st || (i - st > 1 && s[st] == '0')) return false;
    }
    if (i == n) return true;
    if (s[i] == '#') return i + 1 == n;
    return check_json_pointer(s + i, n - i);
}

bool schema_format_check(const char *f, const char *s, size_t n, bool *known) {
    *known = true;
    if (!strcmp(f, "date")) return check_date(s, n);
    if (!strcmp(f, "time")) return check_time(s, n);
    if (!strcmp(f, "date-time")) return check_datetime(s, n);
    if (!strcmp(f, "duration")) return check_duration(s, n);
    if (!strcmp(f, "email")) return check_email(s, n);
    if (!strcmp(f, "hostname")) return check_hostname(s, n);
    if (!strcmp(f, "ipv4")) return check_ipv4(s, n);
    if (!strcmp(f, "ipv6")) return check_ipv6(s, n);
    if (!strcmp(f, "uri")) return check_uri_ref(s, n, true, false);
    if (!strcmp(f, "uri-reference")) return check_uri_ref(s, n, false, false);
    if (!strcmp(f, "iri")) return check_uri_ref(s, n, true, true);
    if (!strcmp(f, "iri-reference")) return check_uri_ref(s, n, false, true);
    if (!strcmp(f, "uuid")) return check_uuid(s, n);
    if (!strcmp(f, "uri-template")) return check_uri_template(s, n);
    if (!strcmp(f, "json-pointer")) return check_json_pointer(s, n);
    if (!strcmp(f, "relative-json-pointer")) return check_rel_pointer(s, n);
    if (!strcmp(f, "regex")) {
        regex *re;
        qerr e;
        if (regex_compile(s, n, &re, &e)) return false;
        regex_free(re);
        return true;
    }
    *known = false;
    return true;
}
