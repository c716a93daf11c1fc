// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Compiles cleanly but fails verification: it reads packet data without
 * checking it against data_end. Tests load it to see the verifier log
 * reach the error that user space reports.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int verifier_reject(struct xdp_md *ctx)
{
	unsigned char *data = (void *)(long)ctx->data;

	/* Byte 12 is the first ethertype byte, read unchecked on purpose. */
	return data[12] == 0x08 ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
