// The in-memory log of one container: stdout and stderr interleaved in
// arrival order, as `kubectl logs` shows them, keeping only the newest
// maxBytes so a chatty server cannot exhaust the test's memory.

export class LogBuffer {
  private chunks: Buffer[] = [];
  private size = 0;

  constructor(private readonly maxBytes: number) {}

  append(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;

    // Drops whole chunks from the front, then trims the oldest remaining
    // chunk, so the buffer contains exactly the newest maxBytes.
    while (this.size > this.maxBytes) {
      const oldest = this.chunks[0]!;
      const excess = this.size - this.maxBytes;
      if (oldest.length <= excess) {
        this.chunks.shift();
        this.size -= oldest.length;
      } else {
        this.chunks[0] = oldest.subarray(excess);
        this.size -= excess;
      }
    }
  }

  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}
