// Training data: the bundled Fashion-MNIST loader and loaders for
// user-provided image/label pairs in IDX or .npy form.
//
// Images come back as one flat Float32Array of n * prod(shape) values;
// 8-bit pixels are scaled to [0, 1] by dividing by 255, float data are kept
// as they are. Token ids (for a model whose input is integer) come back as an
// Int32Array, unscaled, from any integer type. Labels come back as an
// Int32Array of class indices: one per sample, or one per position (shape
// [n, ...], e.g. [n, seq] for a language model).

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readIdx, type IdxTensor } from './idx.js';
import { readNpy, readNpz, type NpyArray } from './npy.js';

export interface Split {
  /** n * prod(shape) values, sample-major: floats, or token ids. */
  x: Float32Array | Int32Array;
  y: Int32Array;
  n: number;
}

export interface LabelledData extends Split {
  /** Shape of one sample, e.g. [1, 28, 28]. */
  shape: number[];
  /** Labels per sample (the product of the labels' dimensions after the first). */
  labelsPer: number;
}

/** Integer dtype names of IDX (u8, i8, i16, i32) and numpy (u1, i4, i8 = int64, range-checked into int32). */
const INTEGER = ['u8', 'i8', 'i16', 'i32', 'u1', 'i4'];

export interface Dataset {
  train: Split;
  test: Split;
  shape: number[];
  classes: number;
}

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

const FASHION_MNIST_FILES = {
  trainImages: 'train-images-idx3-ubyte',
  trainLabels: 'train-labels-idx1-ubyte',
  testImages: 't10k-images-idx3-ubyte',
  testLabels: 't10k-labels-idx1-ubyte',
} as const;

/** Finds `base` or `base.gz` in `dir`. */
function findIdx(dir: string, base: string): string | undefined {
  for (const name of [`${base}.gz`, base]) {
    const p = join(dir, name);
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** Loads Fashion-MNIST (60000 train and 10000 test images of 1x28x28, 10 classes). */
export function loadFashionMnist(dir: string = FASHION_MNIST_DIR): Dataset {
  const paths: Partial<Record<keyof typeof FASHION_MNIST_FILES, string>> = {};
  const missing: string[] = [];
  for (const [key, base] of Object.entries(FASHION_MNIST_FILES) as Array<[keyof typeof FASHION_MNIST_FILES, string]>) {
    const p = findIdx(dir, base);
    if (p) paths[key] = p;
    else missing.push(`${base}[.gz]`);
  }
  if (missing.length > 0) {
    throw new Error(
      `Fashion-MNIST data set is missing (${missing.join(', ')} not found in ${dir}): install it with \`apt-get install dataset-fashion-mnist\` or pass the directory that holds the IDX files`,
    );
  }
  const train = loadIdxPair(paths.trainImages!, paths.trainLabels!);
  const test = loadIdxPair(paths.testImages!, paths.testLabels!);
  for (const [split, d] of [['train', train], ['test', test]] as const) {
    if (d.shape.join('x') !== '28x28') throw new Error(`${dir}: Fashion-MNIST ${split} images have shape [${d.shape.join(', ')}], expected [28, 28]`);
  }
  return {
    train: { x: train.x, y: train.y, n: train.n },
    test: { x: test.x, y: test.y, n: test.n },
    shape: [1, 28, 28],
    classes: 10,
  };
}

function imagesToFloat(t: { dtype: string; data: ArrayLike<number> }, path: string): Float32Array {
  switch (t.dtype) {
    case 'u8':
    case 'u1': {
      const out = new Float32Array(t.data.length);
      for (let i = 0; i < out.length; i++) out[i] = t.data[i]! / 255;
      return out;
    }
    case 'f32':
    case 'f4':
    case 'f2':
      return t.data instanceof Float32Array ? t.data : Float32Array.from(t.data);
    case 'f64':
    case 'f8':
      return Float32Array.from(t.data);
    default:
      throw new Error(`${path}: images must be uint8 or floating point, got ${t.dtype}`);
  }
}

function labelsToInt(t: { dtype: string; shape: number[]; data: ArrayLike<number> }, path: string): Int32Array {
  if (!INTEGER.includes(t.dtype)) {
    throw new Error(`${path}: labels must be integers, got ${t.dtype}`);
  }
  if (t.shape.length < 1) throw new Error(`${path}: labels need a leading sample dimension, got a scalar`);
  const y = t.data instanceof Int32Array ? t.data : Int32Array.from(t.data);
  for (let i = 0; i < y.length; i++) {
    if (y[i]! < 0) throw new Error(`${path}: label ${y[i]} at index ${i} is negative`);
  }
  return y;
}

function tokensToInt(t: { dtype: string; data: ArrayLike<number> }, path: string): Int32Array {
  if (!INTEGER.includes(t.dtype)) throw new Error(`${path}: the model takes token ids (integers), the file holds ${t.dtype}`);
  return t.data instanceof Int32Array ? t.data : Int32Array.from(t.data);
}

/** Thrown when float samples hold NaN or inf (and they are not allowed). */
export class NonFiniteDataError extends Error {}

/**
 * Rejects samples holding NaN or ±inf (after conversion to f32: a float64 beyond the f32
 * range is inf), naming the file, the sample (row) and the position in it.
 */
export function checkFinite(x: Float32Array, per: number, path: string): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (v - v !== 0) {
      const what = Number.isNaN(v) ? 'NaN' : v > 0 ? 'inf' : '-inf';
      throw new NonFiniteDataError(
        `${path}: sample ${Math.floor(i / per)} holds ${what} (at position ${i % per} of ${per}); remove it, or pass --allow-nonfinite to train on it anyway (steps with non-finite gradients are skipped)`,
      );
    }
  }
}

export interface LoadOptions {
  /** The model takes integer token ids: keep integer samples as ids. */
  tokens?: boolean;
  /** Keep samples that hold NaN or inf instead of rejecting the file. */
  allowNonFinite?: boolean;
}

function pair(
  images: { dtype: string; shape: number[]; data: ArrayLike<number> },
  labels: { dtype: string; shape: number[]; data: ArrayLike<number> },
  imagesPath: string,
  labelsPath: string,
  opts: LoadOptions = {},
): LabelledData {
  if (images.shape.length < 2) throw new Error(`${imagesPath}: samples need a leading sample dimension, got shape [${images.shape.join(', ')}]`);
  const n = images.shape[0]!;
  const y = labelsToInt(labels, labelsPath);
  if (labels.shape[0] !== n) throw new Error(`${labelsPath}: labels for ${labels.shape[0]} samples, ${imagesPath} has ${n}`);
  const x = opts.tokens ? tokensToInt(images, imagesPath) : imagesToFloat(images, imagesPath);
  const shape = images.shape.slice(1);
  if (x instanceof Float32Array && !opts.allowNonFinite) checkFinite(x, Math.max(1, shape.reduce((a, b) => a * b, 1)), imagesPath);
  return { x, y, n, shape, labelsPer: n ? y.length / n : 1 };
}

/** `opts`: LoadOptions, or (older form) whether the model takes token ids. */
const loadOpts = (opts: LoadOptions | boolean | undefined): LoadOptions => (typeof opts === 'boolean' ? { tokens: opts } : (opts ?? {}));

/** Loads images and labels from IDX files (plain or .gz). */
export function loadIdxPair(imagesPath: string, labelsPath: string, opts?: LoadOptions | boolean): LabelledData {
  const images: IdxTensor = readIdx(imagesPath);
  const labels: IdxTensor = readIdx(labelsPath);
  return pair(images, labels, imagesPath, labelsPath, loadOpts(opts));
}

/** Loads samples and labels from .npy files (uint8 images are scaled to [0, 1]; token ids are kept). */
export function loadNpyPair(xPath: string, yPath: string, opts?: LoadOptions | boolean): LabelledData {
  const x: NpyArray = readNpy(xPath);
  const y: NpyArray = readNpy(yPath);
  return pair(x, y, xPath, yPath, loadOpts(opts));
}

/** Loads samples and labels from one .npz file: arrays `x` and `y` (or the names given). */
export function loadNpz(path: string, xName = 'x', yName = 'y', opts?: LoadOptions | boolean): LabelledData {
  const arrays = readNpz(path);
  for (const k of [xName, yName])
    if (!arrays[k]) throw new Error(`${path}: no array '${k}' (it has ${Object.keys(arrays).join(', ') || 'none'})`);
  return pair(arrays[xName], arrays[yName], `${path}:${xName}`, `${path}:${yName}`, loadOpts(opts));
}
