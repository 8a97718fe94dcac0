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

/**
 * @file tb_rate.h
 * @brief Fixed-window request counters in memory shared by all httpd
 * children.  Lock-free: one 64-bit word per slot (window << 32 | count),
 * updated with compare-and-swap.  No httpd here.
 *
 * Ids hash onto a fixed table.  Two ids sharing a slot count together:
 * with the same window length that only makes a limit stricter; with
 * different lengths (two locations' limits) each may restart the other's
 * count, a looser limit for both.  With 65 536 slots and a seeded hash
 * that takes an unlucky pair; size the table for the number of clients.
 */

#ifndef TB_RATE_H
#define TB_RATE_H

#include <apr.h>

/** The table, as laid out in shared memory. */
typedef struct {
    apr_uint64_t seed;        /* hash seed, chosen once per server start */
    apr_uint64_t nslots;
    volatile apr_uint64_t slots[1];
} tb_rate_table;

/** Bytes of shared memory a table of @a nslots needs. */
apr_size_t tb_rate_size(apr_size_t nslots);

/** Lay out a fresh table in @a mem. */
tb_rate_table *tb_rate_init(void *mem, apr_size_t nslots, apr_uint64_t seed);

/**
 * Count one request of @a id in the window @a window (time / period).
 * @return the number of requests of this id (and its slot mates) in the
 *         window, this one included
 */
apr_uint32_t tb_rate_hit(tb_rate_table *t, const char *id, apr_size_t len,
                         apr_uint32_t window);

#endif /* TB_RATE_H */
