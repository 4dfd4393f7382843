// The two errors a user can cause (bad input, no usable GPU): both are reported as one line
// with exit code 2. This module has no dependencies, so the runtime copied next to a
// compiled program (and the browser page) can throw them too.

/** An error about the user's input, reported as one line with exit code 2. */
export class InputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InputError';
  }
}

/** No WebGPU adapter or device could be opened. */
export class GpuUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GpuUnavailableError';
  }
}
