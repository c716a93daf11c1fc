/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Kernel UAPI and libbpf headers used by every zerohold BPF source. */
#ifndef ZH_LIB_COMMON_H
#define ZH_LIB_COMMON_H

#include <stdbool.h>

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "zerohold.h"

/* Reads a word that user space or another CPU may change concurrently. */
#define ZH_READ_ONCE(x)		(*(const volatile typeof(x) *)&(x))

/* Writes a word that another CPU may read concurrently. */
#define ZH_WRITE_ONCE(x, v)	(*(volatile typeof(x) *)&(x) = (v))

#endif /* ZH_LIB_COMMON_H */
