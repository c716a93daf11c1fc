// SPDX-License-Identifier: Apache-2.0
//
// nft-batch: applies nftables scripts through libnftables, one transaction
// per script, in a process that stays up. The testbed's kube-proxy stand-in
// runs one per node network namespace (under nsenter), because starting
// nsenter and nft for each sync costs about 8 ms on a KVM guest, more than
// the transaction itself.
//
// Protocol, over stdin and stdout:
//   request:  the script text, then one NUL byte
//   response: '0' if the transaction was committed, or '1' and the error
//             text that nft would print, then one NUL byte
// Responses come in request order. End of input ends the process with
// status 0.

#include <nftables/libnftables.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

static int reply(char status, const char *text)
{
	if (putchar(status) == EOF || fputs(text, stdout) == EOF || putchar('\0') == EOF)
		return -1;
	return fflush(stdout);
}

int main(void)
{
	struct nft_ctx *nft = nft_ctx_new(NFT_CTX_DEFAULT);
	if (!nft) {
		fputs("nft-batch: nft_ctx_new failed\n", stderr);
		return 1;
	}

	// Buffered so that errors go into the response and listings produced
	// by commands such as `list` do not mix with the protocol.
	if (nft_ctx_buffer_output(nft) || nft_ctx_buffer_error(nft)) {
		fputs("nft-batch: cannot buffer the output of libnftables\n", stderr);
		return 1;
	}

	char *script = NULL;
	size_t capacity = 0;
	ssize_t length;
	int status = 0;

	while ((length = getdelim(&script, &capacity, '\0', stdin)) > 0) {
		// A script without its NUL comes from a writer that stopped
		// mid-request. Running it could commit half of what it meant.
		if (script[length - 1] != '\0') {
			fputs("nft-batch: input ended inside a script, which was not run\n", stderr);
			status = 1;
			break;
		}

		int failed = nft_run_cmd_from_buffer(nft, script);

		// Reading a buffer also empties it for the next script.
		nft_ctx_get_output_buffer(nft);
		const char *errors = nft_ctx_get_error_buffer(nft);
		if (reply(failed ? '1' : '0', failed ? errors : "") != 0) {
			status = 1;
			break;
		}
	}

	free(script);
	nft_ctx_free(nft);
	return status;
}
