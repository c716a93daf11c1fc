// An ordered list of cleanup steps that runs in reverse order of
// registration, once. Each step runs even when an earlier one failed, so a
// failure in one component's stop() cannot leave the others running.

export class Teardown {
  private readonly steps: { name: string; run: () => Promise<unknown> }[] = [];
  private running: Promise<void> | undefined;

  // Registers a step. Steps registered after run() started are not run.
  add(name: string, run: () => Promise<unknown>): void {
    this.steps.push({ name, run });
  }

  // Runs every step, last registered first, and rejects afterwards with the
  // failures if any step failed. Later calls return the first call's promise.
  run(): Promise<void> {
    this.running ??= this.runSteps();
    return this.running;
  }

  private async runSteps(): Promise<void> {
    const failures: Error[] = [];
    for (const step of this.steps.splice(0).reverse()) {
      try {
        await step.run();
      } catch (err) {
        failures.push(new Error(`teardown step "${step.name}" failed: ${(err as Error).message}`, { cause: err }));
      }
    }
    if (failures.length === 1) throw failures[0]!;
    if (failures.length > 1) throw new AggregateError(failures, `${failures.length} teardown steps failed: ${failures.map((f) => f.message).join('; ')}`);
  }
}
