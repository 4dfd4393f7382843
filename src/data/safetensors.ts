// The safetensors checkpoint format.
//
// Layout: an 8-byte little-endian header length N, N bytes of JSON, then the
// tensor data. The JSON maps each tensor name to
// {"dtype", "shape", "data_offsets": [begin, end]} with offsets relative to
// the start of the data section, plus an optional "__metadata__" object of
// string values. Writing sorts tensors by name, lays their data out
// contiguously in that order, and pads the header with spaces so the data
// starts on an 8-byte boundary.

import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';

export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'F8_E4M3' | 'F8_E5M2' | 'U8';

export interface SafetensorsTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  /** Raw little-endian bytes, C order. */
  data: Uint8Array;
}

export interface SafetensorsFile {
  tensors: Record<string, SafetensorsTensor>;
  metadata: Record<string, string>;
}

export const SAFETENSORS_ITEM_SIZE: Record<SafetensorsDtype, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  F8_E4M3: 1,
  F8_E5M2: 1,
  U8: 1,
};

/** Headers larger than this are rejected on read, as the reference implementation does. */
const MAX_HEADER = 100_000_000;

function checkShape(shape: unknown, where: string): number[] {
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new Error(`${where}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  return shape as number[];
}

/** Serialises tensors (and optional string metadata) as safetensors bytes. */
export function encodeSafetensors(tensors: Record<string, SafetensorsTensor>, metadata?: Record<string, string>): Uint8Array {
  const parts = safetensorsParts(tensors, metadata);
  const out = new Uint8Array(parts.reduce((s, p) => s + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/**
 * The bytes of a safetensors file as consecutive parts: the header, then each tensor's data
 * (the tensors' own bytes, not copies), for writing without assembling the file in memory.
 */
export function safetensorsParts(tensors: Record<string, SafetensorsTensor>, metadata?: Record<string, string>): Uint8Array[] {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    const meta: Record<string, string> = {};
    for (const k of Object.keys(metadata).sort()) {
      const v = metadata[k];
      if (typeof v !== 'string') throw new Error(`writeSafetensors: metadata '${k}' must be a string`);
      meta[k] = v;
    }
    header.__metadata__ = meta;
  }
  let offset = 0;
  for (const name of names) {
    if (name === '__metadata__') throw new Error(`writeSafetensors: '__metadata__' is reserved and cannot name a tensor`);
    const t = tensors[name]!;
    if (!(t.dtype in SAFETENSORS_ITEM_SIZE)) throw new Error(`writeSafetensors: tensor '${name}' has unknown dtype '${t.dtype}'`);
    const shape = checkShape(t.shape, `writeSafetensors: tensor '${name}'`);
    const bytes = shape.reduce((a, b) => a * b, 1) * SAFETENSORS_ITEM_SIZE[t.dtype];
    if (t.data.byteLength !== bytes) {
      throw new Error(`writeSafetensors: tensor '${name}' (${t.dtype} [${shape.join(', ')}]) needs ${bytes} bytes, got ${t.data.byteLength}`);
    }
    header[name] = { dtype: t.dtype, shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  const enc = new TextEncoder();
  let headerBytes = enc.encode(json);
  const pad = (8 - (headerBytes.length % 8)) % 8;
  if (pad) {
    json += ' '.repeat(pad);
    headerBytes = enc.encode(json);
  }
  const head = new Uint8Array(8 + headerBytes.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  head.set(headerBytes, 8);
  return [head, ...names.map((name) => tensors[name]!.data)];
}

/** Writes a safetensors file, part by part. */
export function writeSafetensors(path: string, tensors: Record<string, SafetensorsTensor>, metadata?: Record<string, string>): void {
  writeParts(path, safetensorsParts(tensors, metadata));
}

/** Writes consecutive byte parts into a new file. */
export function writeParts(path: string, parts: Uint8Array[]): void {
  const fd = openSync(path, 'w');
  try {
    for (const p of parts) {
      let done = 0;
      while (done < p.byteLength) done += writeSync(fd, p, done, p.byteLength - done);
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Parses safetensors bytes; `name` prefixes error messages. Tensor data are copies, each in a
 * buffer of its own; with `view`, views of `bytes` instead (no copy: the caller keeps `bytes`
 * unchanged while it uses them).
 */
export function decodeSafetensors(bytes: Uint8Array, name = '<safetensors>', opts: { view?: boolean } = {}): SafetensorsFile {
  if (bytes.length < 8) throw new Error(`${name}: truncated safetensors file (${bytes.length} bytes, no header length)`);
  const n = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER)) throw new Error(`${name}: safetensors header length ${n} is too large`);
  const headerLen = Number(n);
  if (8 + headerLen > bytes.length) {
    throw new Error(`${name}: truncated safetensors header (needs ${headerLen} bytes, file has ${bytes.length - 8} after the length)`);
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen)));
  } catch (e) {
    throw new Error(`${name}: safetensors header is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new Error(`${name}: safetensors header must be a JSON object`);
  }
  const dataStart = 8 + headerLen;
  const dataLen = bytes.length - dataStart;
  const tensors: Record<string, SafetensorsTensor> = {};
  const metadata: Record<string, string> = {};
  const spans: Array<[number, number, string]> = [];
  for (const [key, value] of Object.entries(header as Record<string, unknown>)) {
    if (key === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${name}: __metadata__ must be an object`);
      for (const [mk, mv] of Object.entries(value as Record<string, unknown>)) {
        if (typeof mv !== 'string') throw new Error(`${name}: __metadata__ value '${mk}' must be a string`);
        metadata[mk] = mv;
      }
      continue;
    }
    const where = `${name}: tensor '${key}'`;
    const info = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof info !== 'object' || info === null) throw new Error(`${where}: entry must be an object`);
    if (typeof info.dtype !== 'string' || !(info.dtype in SAFETENSORS_ITEM_SIZE)) {
      throw new Error(`${where}: unsupported dtype ${JSON.stringify(info.dtype)}`);
    }
    const dtype = info.dtype as SafetensorsDtype;
    const shape = checkShape(info.shape, where);
    const offs = info.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isInteger(o) && o >= 0)) {
      throw new Error(`${where}: data_offsets must be [begin, end], got ${JSON.stringify(offs)}`);
    }
    const [begin, end] = offs as [number, number];
    if (begin > end || end > dataLen) throw new Error(`${where}: data_offsets [${begin}, ${end}] lie outside the ${dataLen}-byte data section`);
    const need = shape.reduce((a, b) => a * b, 1) * SAFETENSORS_ITEM_SIZE[dtype];
    if (end - begin !== need) throw new Error(`${where}: ${dtype} [${shape.join(', ')}] needs ${need} bytes, data_offsets span ${end - begin}`);
    // A copy, so data.buffer can be viewed as a typed array of the tensor's type (Buffer.slice would share memory).
    const span = bytes.subarray(dataStart + begin, dataStart + end);
    tensors[key] = { dtype, shape, data: opts.view ? span : new Uint8Array(span) };
    spans.push([begin, end, key]);
  }
  spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let expected = 0;
  for (const [begin, end, key] of spans) {
    if (begin !== expected) {
      throw new Error(`${name}: tensor '${key}' starts at ${begin}, expected ${expected} (data must be contiguous, without overlaps or gaps)`);
    }
    expected = end;
  }
  if (expected !== dataLen) throw new Error(`${name}: ${dataLen - expected} bytes of data after the last tensor`);
  return { tensors, metadata };
}

/** Reads a safetensors file. */
export function readSafetensors(path: string): SafetensorsFile {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new Error(`${path}: cannot read safetensors file: ${(e as Error).message}`);
  }
  return decodeSafetensors(bytes, path);
}
