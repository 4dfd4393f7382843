import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { loadTextCorpus, textCorpus } from '../src/data/text.js';
import { decodeArray, loadFixture } from './helpers/fixtures.js';

const GPL3 = '/usr/share/common-licenses/GPL-3';
const tmp = mkdtempSync(join(tmpdir(), 'mpc-text-'));

describe('textCorpus windows and split', () => {
  const bytes = Uint8Array.from({ length: 21 }, (_, i) => i);

  it('cuts each part into non-overlapping windows of seq inputs and the next bytes', () => {
    const c = textCorpus(bytes, { seq: 4, testFraction: 0.25 });
    // 21 bytes, floor(21 * 0.25) = 5 held out: train = [0, 16), test = [16, 21).
    expect(c.train).toMatchObject({ start: 0, bytes: 16, n: 3 });
    expect(Array.from(c.train.x)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect(Array.from(c.train.y)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    expect(c.test).toMatchObject({ start: 16, bytes: 5, n: 1 });
    expect(Array.from(c.test.x)).toEqual([16, 17, 18, 19]);
    expect(Array.from(c.test.y)).toEqual([17, 18, 19, 20]);
    expect(c).toMatchObject({ seq: 4, vocab: 128, bytes: 21, distinct: 21 });
    expect(c.unigramEntropy).toBeCloseTo(Math.log(21), 12);
  });

  it('never lets a window cross from the training part into the test part', () => {
    // 17 training bytes hold exactly 4 windows of 4 (the 17th byte is the last target).
    const c = textCorpus(Uint8Array.from({ length: 20 }, (_, i) => i), { seq: 4, testFraction: 0.15 });
    expect(c.train).toMatchObject({ bytes: 17, n: 4 });
    expect(c.train.y[c.train.y.length - 1]).toBe(16);
    expect(c.test).toMatchObject({ start: 17, bytes: 3, n: 0 });
  });

  it('testFraction 0 keeps every byte for training', () => {
    const c = textCorpus(bytes, { seq: 5, testFraction: 0 });
    expect(c.train.n).toBe(4);
    expect(c.test.n).toBe(0);
  });

  it('refuses a byte outside the vocabulary, naming its offset, on one line', () => {
    const utf8 = new TextEncoder().encode('naive café text');
    expect(() => textCorpus(utf8, { seq: 4 }, 'cafe.txt')).toThrow(
      /^cafe\.txt: byte 195 \(0xc3\) at offset 9 is outside the vocabulary of 128 symbols .*refused, not mapped$/,
    );
    expect(() => textCorpus(Uint8Array.of(1, 2, 3, 9), { seq: 2, vocab: 8 })).toThrow(/byte 9 \(0x09\) at offset 3/);
    expect(textCorpus(utf8, { seq: 4, vocab: 256 }).distinct).toBe(12);
  });

  it('rejects bad options and texts too short for one window', () => {
    expect(() => textCorpus(bytes, { seq: 0 })).toThrow(/seq must be a positive integer/);
    expect(() => textCorpus(bytes, { seq: 2.5 })).toThrow(/seq must be a positive integer/);
    expect(() => textCorpus(bytes, { seq: 4, vocab: 300 })).toThrow(/vocab must be an integer in 1\.\.256/);
    expect(() => textCorpus(bytes, { seq: 4, testFraction: 1 })).toThrow(/testFraction must be in \[0, 1\)/);
    expect(() => textCorpus(bytes, { seq: 20 })).toThrow(/19 training bytes make no window of 20 inputs/);
    expect(() => textCorpus(new Uint8Array(0), { seq: 1 })).toThrow(/make no window/);
  });

  it('loadTextCorpus names the file in its errors', () => {
    const path = join(tmp, 'utf8.txt');
    writeFileSync(path, 'ok\n\u00e9\n');
    expect(() => loadTextCorpus(path, { seq: 2 })).toThrow(`${path}: byte 195 (0xc3) at offset 3`);
  });
});

describe.skipIf(!existsSync(GPL3))('GPL-3 as a corpus', () => {
  const file = readFileSync(GPL3);
  const c = loadTextCorpus(GPL3, { seq: 16 });

  it('has the documented size, alphabet and unigram entropy', () => {
    expect(c.bytes).toBe(35149);
    expect(c.distinct).toBe(76);
    // -sum p ln p of the byte frequencies (3.16995802793663 by NumPy).
    expect(c.unigramEntropy).toBeCloseTo(3.169958027936633, 10);
    expect(c.unigramEntropy.toFixed(2)).toBe('3.17');
  });

  it('holds out the last 10% of the bytes and windows both parts with stride 16', () => {
    // floor(35149 * 0.1) = 3514 test bytes; (31635 - 1) / 16 -> 1977 windows, (3514 - 1) / 16 -> 219.
    expect(c.train).toMatchObject({ start: 0, bytes: 31635, n: 1977 });
    expect(c.test).toMatchObject({ start: 31635, bytes: 3514, n: 219 });
    for (const [split, k] of [[c.train, 0], [c.train, 1976], [c.test, 0], [c.test, 218]] as const) {
      const at = split.start + 16 * k;
      expect(Array.from(split.x.subarray(16 * k, 16 * k + 16))).toEqual(Array.from(file.subarray(at, at + 16)));
      expect(Array.from(split.y.subarray(16 * k, 16 * k + 16))).toEqual(Array.from(file.subarray(at + 1, at + 17)));
    }
  });

  it('gives the batch of the PyTorch GPT fixtures', () => {
    for (const name of ['gpt-torch.json', 'gpt-op13-torch.json']) {
      const fx = loadFixture(name);
      const x = decodeArray(fx.batch.x).data;
      const y = decodeArray(fx.batch.y).data;
      expect(fx.batch.x.shape).toEqual([4, 16]);
      fx.batch.windows.forEach((k: number, i: number) => {
        expect(Array.from(x.subarray(16 * i, 16 * i + 16))).toEqual(Array.from(c.train.x.subarray(16 * k, 16 * k + 16)));
        expect(Array.from(y.subarray(16 * i, 16 * i + 16))).toEqual(Array.from(c.train.y.subarray(16 * k, 16 * k + 16)));
      });
    }
  });
});
