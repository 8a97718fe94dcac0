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

#include <string.h>

#include <apr_atomic.h>

#include "tb_rate.h"

apr_size_t tb_rate_size(apr_size_t nslots)
{
    return sizeof(tb_rate_table) + (nslots - 1) * sizeof(apr_uint64_t);
}

tb_rate_table *tb_rate_init(void *mem, apr_size_t nslots, apr_uint64_t seed)
{
    tb_rate_table *t = mem;

    memset(mem, 0, tb_rate_size(nslots));
    t->seed = seed;
    t->nslots = nslots;
    return t;
}

/* FNV-1a, seeded: ids come from clients, the seed keeps them from
 * choosing collisions in advance. */
static apr_uint64_t tb_hash(apr_uint64_t seed, const char *s, apr_size_t n)
{
    apr_uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    apr_size_t i;

    for (i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h ^ (h >> 29);
}

apr_uint32_t tb_rate_hit(tb_rate_table *t, const char *id, apr_size_t len,
                         apr_uint32_t window)
{
    volatile apr_uint64_t *slot = &t->slots[tb_hash(t->seed, id, len)
                                            % t->nslots];
    apr_uint64_t old, new;

    do {
        old = apr_atomic_read64(slot);
        if ((apr_uint32_t)(old >> 32) != window) {
            new = ((apr_uint64_t)window << 32) | 1;
        }
        else if ((apr_uint32_t)old == 0xFFFFFFFFU) {
            return 0xFFFFFFFFU;             /* saturated for this window */
        }
        else {
            new = old + 1;
        }
    } while (apr_atomic_cas64(slot, new, old) != old);
    return (apr_uint32_t)new;
}
