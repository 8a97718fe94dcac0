/* Licensed to the Apache Software Foundation (ASF) under one or more
 * contributor license agreements.  See the NOTICE file distributed with
 * this work for additional information regarding copyright ownership.
 * The ASF licenses this file to You under the Apache License, Version 2.0
 * (the "License"); you may not use this file except in compliance with
 * the License.  You may obtain a copy of the License at
 *
 *     http://www.apache.org/licenses/LICENSE-2.0
 *
 * Unless required by applicable law or agreed to in writing, software
 * distributed under the License is distributed on an "AS IS" BASIS,
 * WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 * See the License for the specific language governing permissions and
 * limitations under the License.
 */

/*
 * ISO-8601 date-times as sent in "timestamp" / "update_timestamp".
 * Calendar arithmetic is done here rather than with timegm(), which is
 * not in POSIX and depends on the process time zone database.
 */

#include "tb_batch.h"

static int tb_digits(const char *s, apr_size_t len, apr_size_t *pos,
                     int n, int *out)
{
    int v = 0, i;

    if (len - *pos < (apr_size_t)n) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        char c = s[*pos + i];
        if (c < '0' || c > '9') {
            return -1;
        }
        v = v * 10 + (c - '0');
    }
    *pos += n;
    *out = v;
    return 0;
}

static int tb_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date, year >= 1 (an
 * offset can bring 1969-12-31T23:00-01:00 to the epoch). */
static long tb_days(int y, int m, int d)
{
    static const int before[12] = { 0, 31, 59, 90, 120, 151, 181, 212,
                                    243, 273, 304, 334 };
    long yy = y - 1;
    long days = 365L * (y - 1970)
                + (yy / 4 - yy / 100 + yy / 400) - (1969 / 4 - 1969 / 100 + 1969 / 400);

    days += before[m - 1] + (m > 2 && tb_leap(y)) + (d - 1);
    return days;
}

int tb_parse_iso8601(const char *s, apr_size_t len, double *t)
{
    static const int mdays[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31,
                                   30, 31 };
    apr_size_t pos = 0;
    int y, mo, d, h = 0, mi = 0, sec = 0, off = 0;
    double frac = 0;

    if (tb_digits(s, len, &pos, 4, &y) || pos >= len || s[pos++] != '-'
        || tb_digits(s, len, &pos, 2, &mo) || pos >= len || s[pos++] != '-'
        || tb_digits(s, len, &pos, 2, &d)) {
        return -1;
    }
    if (y < 1 || mo < 1 || mo > 12 || d < 1
        || d > mdays[mo - 1] + (mo == 2 && tb_leap(y))) {
        return -1;
    }
    if (pos < len) {
        if (s[pos] != 'T' && s[pos] != 't' && s[pos] != ' ') {
            return -1;
        }
        pos++;
        if (tb_digits(s, len, &pos, 2, &h) || pos >= len || s[pos++] != ':'
            || tb_digits(s, len, &pos, 2, &mi)) {
            return -1;
        }
        if (pos < len && s[pos] == ':') {
            pos++;
            if (tb_digits(s, len, &pos, 2, &sec)) {
                return -1;
            }
            if (pos < len && (s[pos] == '.' || s[pos] == ',')) {
                double scale = 0.1;
                apr_size_t start = ++pos;
                while (pos < len && s[pos] >= '0' && s[pos] <= '9') {
                    frac += (s[pos] - '0') * scale;
                    scale /= 10;
                    pos++;
                }
                if (pos == start) {
                    return -1;
                }
            }
        }
        if (h > 23 || mi > 59 || sec > 60) {
            return -1;
        }
        if (pos < len) {
            if (s[pos] == 'Z' || s[pos] == 'z') {
                pos++;
            }
            else if (s[pos] == '+' || s[pos] == '-') {
                int sign = s[pos++] == '-' ? -1 : 1, oh, om = 0;
                if (tb_digits(s, len, &pos, 2, &oh)) {
                    return -1;
                }
                if (pos < len && s[pos] == ':') {
                    pos++;
                    if (tb_digits(s, len, &pos, 2, &om)) {
                        return -1;            /* "+01:" lacks its minutes */
                    }
                }
                else if (pos < len && tb_digits(s, len, &pos, 2, &om)) {
                    return -1;
                }
                if (oh > 23 || om > 59) {
                    return -1;
                }
                off = sign * (oh * 3600 + om * 60);
            }
            else {
                return -1;
            }
        }
    }
    if (pos != len) {
        return -1;
    }
    *t = (double)tb_days(y, mo, d) * 86400.0 + h * 3600 + mi * 60 + sec
         + frac - off;
    return 0;
}
