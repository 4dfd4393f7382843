// Byte-level text corpora for next-token training (the GPT block in models/).
//
// Every byte of the file is one token, so the vocabulary is the byte values
// 0 .. vocab-1 (128 = ASCII by default). A byte >= vocab is refused, not
// mapped to some "unknown" token: a silent mapping would train the model on a
// different text than the one given, and a wrong file (UTF-8, binary) is far
// more likely than a deliberate one.
//
// The text is split by position, not by window: the first bytes are the
// training part and the last `testFraction` of the bytes (rounded down) the
// test part, so no test byte is ever seen in training. Each part is cut into
// windows of `seq` inputs with stride `seq` (windows do not overlap): window k
// has inputs bytes[k*seq .. k*seq+seq) and targets bytes[k*seq+1 .. k*seq+seq+1),
// i.e. y[k, t] is the byte after x[k, t]. A part of L bytes gives
// floor((L - 1) / seq) windows; its last (L - 1) mod seq bytes are not used
// as inputs (its last byte is only ever a target).

import { readFileSync } from 'node:fs';

export interface TextSplit {
  /** n * seq input tokens, window-major ([n, seq]). */
  x: Int32Array;
  /** n * seq targets ([n, seq]): y[k, t] is the byte that follows x[k, t]. */
  y: Int32Array;
  /** Number of windows. */
  n: number;
  /** Offset in the file of the part's first byte. */
  start: number;
  /** Bytes in the part (inputs and targets drawn from these only). */
  bytes: number;
}

export interface TextCorpus {
  train: TextSplit;
  test: TextSplit;
  seq: number;
  vocab: number;
  /** Bytes in the whole text. */
  bytes: number;
  /** Distinct byte values in the whole text. */
  distinct: number;
  /** Entropy of the byte frequencies of the whole text, in nats: the loss of the best context-free predictor. */
  unigramEntropy: number;
}

export interface TextCorpusOptions {
  /** Input bytes per window (the model's context length). */
  seq: number;
  /** Vocabulary size; every byte must be below it. Default 128 (ASCII). */
  vocab?: number;
  /** Fraction of the bytes, at the end, held out for testing. Default 0.1. */
  testFraction?: number;
}

/** Reads a text file as a byte-level corpus (see the head of this file). */
export function loadTextCorpus(path: string, opts: TextCorpusOptions): TextCorpus {
  return textCorpus(readFileSync(path), opts, path);
}

/** The corpus of `bytes` (`name` is what error messages call it). */
export function textCorpus(bytes: Uint8Array, opts: TextCorpusOptions, name = 'text'): TextCorpus {
  const { seq, vocab = 128, testFraction = 0.1 } = opts;
  if (!Number.isInteger(seq) || seq < 1) throw new Error(`${name}: seq must be a positive integer, got ${seq}`);
  if (!Number.isInteger(vocab) || vocab < 1 || vocab > 256) throw new Error(`${name}: vocab must be an integer in 1..256, got ${vocab}`);
  if (!(testFraction >= 0 && testFraction < 1)) throw new Error(`${name}: testFraction must be in [0, 1), got ${testFraction}`);
  const counts = new Float64Array(256);
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (b >= vocab) {
      throw new Error(
        `${name}: byte ${b} (0x${b.toString(16).padStart(2, '0')}) at offset ${i} is outside the vocabulary of ${vocab} symbols (bytes 0..${vocab - 1}); out-of-vocabulary bytes are refused, not mapped`,
      );
    }
    counts[b]!++;
  }
  const testBytes = Math.floor(bytes.length * testFraction);
  const cut = bytes.length - testBytes;
  const train = windows(bytes, 0, cut, seq);
  if (train.n === 0) throw new Error(`${name}: ${cut} training bytes make no window of ${seq} inputs and ${seq} targets (need at least ${seq + 1})`);
  return {
    train,
    test: windows(bytes, cut, bytes.length, seq),
    seq,
    vocab,
    bytes: bytes.length,
    distinct: counts.reduce((d, c) => d + (c > 0 ? 1 : 0), 0),
    unigramEntropy: entropy(counts, bytes.length),
  };
}

/** Non-overlapping windows of bytes[start, end): inputs and the next byte of each. */
function windows(bytes: Uint8Array, start: number, end: number, seq: number): TextSplit {
  const n = Math.max(0, Math.floor((end - start - 1) / seq));
  const x = new Int32Array(n * seq);
  const y = new Int32Array(n * seq);
  for (let i = 0; i < n * seq; i++) {
    x[i] = bytes[start + i]!;
    y[i] = bytes[start + i + 1]!;
  }
  return { x, y, n, start, bytes: end - start };
}

/** -sum p ln p over the nonzero counts. */
function entropy(counts: Float64Array, total: number): number {
  let h = 0;
  for (const c of counts) if (c > 0) h -= (c / total) * Math.log(c / total);
  return h;
}
