// The model stream's records (adasr.stream.codec) decoded in the browser, and ModelState: the
// page's copy of the model, kept in step with the stream exactly as Python's ModelState.apply
// keeps it (same checks, same float32 arithmetic, same SHA-256 hashes through WebCrypto).
//
// Record layout (little endian): magic "ASMU" | version u8 | kind u8 (0 full, 1 delta, 2 base
// reference) | codec u8 (0 raw, 1 zlib; the /play routes re-pack LZMA2 as zlib) | value dtype u8
// (0 float32, 1 float16, 2 int8 + float32 scale, 3 int4 + float32 scale: two's complement nibbles,
// the first value in the low nibble) | segment u32 | n_params u64 | base hash 16 B |
// before hash 16 B | after hash 16 B | payload length u32 | payload | SHA-256 of all before, 16 B.

export const HEAD = 72;
const DIGEST = 16;
const MAX_VALUES = 64_000_000;
const MAX_ARCH_JSON = 16 << 20;
const KINDS = ['full', 'delta', 'ref'];

export class DeltaError extends Error {}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

async function digest(bytes) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)).subarray(0, DIGEST);
}

function same(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// 16-byte hash of a Float32Array's exact bits (adasr.stream.codec.vector_hash)
export async function vectorHash(vec) {
  return digest(new Uint8Array(vec.buffer, vec.byteOffset, vec.byteLength));
}

async function inflate(data, limit) {
  const stream = new Blob([data]).stream().pipeThrough(new DecompressionStream('deflate'));
  const reader = stream.getReader();
  const parts = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > limit) {
      await reader.cancel();
      throw new Error(`payload decompresses to more than the ${limit} bytes its header allows`);
    }
    parts.push(value);
  }
  const out = new Uint8Array(total);
  let pos = 0;
  for (const p of parts) { out.set(p, pos); pos += p.length; }
  return out;
}

function payloadLimit(kind, n) {
  if (kind === 0) return 4 + MAX_ARCH_JSON + 4 * n;
  if (kind === 2) return 4 + MAX_ARCH_JSON;
  return 9 + 10 * n + 4 + 4 * n;
}

// Check a record's magic, version, length and checksum, and decompress its payload.
export async function parseRecord(bytes, what = 'model record') {
  const data = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (data.length < HEAD + DIGEST || data[0] !== 0x41 || data[1] !== 0x53 || data[2] !== 0x4d || data[3] !== 0x55) {
    throw new DeltaError(`${what}: not an adasr model record (bad magic or too short)`);
  }
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const version = data[4], kind = data[5], codec = data[6], dtype = data[7];
  if (version !== 1) throw new DeltaError(`${what}: model record version ${version} is not supported`);
  const segment = dv.getUint32(8, true);
  const nBig = dv.getBigUint64(12, true);
  const length = dv.getUint32(68, true);
  const end = HEAD + length;
  if (data.length !== end + DIGEST) {
    throw new DeltaError(`${what}: damaged model record (length ${data.length} bytes, header says ${end + DIGEST})`);
  }
  if (!same(await digest(data.subarray(0, end)), data.subarray(end))) {
    throw new DeltaError(`${what}: damaged model record (checksum mismatch)`);
  }
  if (kind > 2 || dtype > 3 || (kind === 2 && dtype >= 2)) {
    throw new DeltaError(`${what}: damaged model record (unknown kind ${kind} or value type ${dtype})`);
  }
  if (nBig > BigInt(MAX_VALUES)) throw new DeltaError(`${what}: damaged model record (${nBig} parameters)`);
  const n = Number(nBig);
  const body = data.subarray(HEAD, end);
  let payload;
  try {
    if (codec === 0) payload = body;
    else if (codec === 1) payload = await inflate(body, payloadLimit(kind, n));
    else throw new Error(codec === 2 ? 'LZMA2 payload: fetch records from the /play routes (zlib)' : `unknown compression ${codec}`);
    if (payload.length > payloadLimit(kind, n)) throw new Error('payload larger than its header allows');
  } catch (e) {
    throw new DeltaError(`${what}: damaged model record (${e.message})`);
  }
  return {
    kind: KINDS[kind], dtype, segment, nParams: n, size: data.length,
    base: data.slice(20, 36), before: data.slice(36, 52), after: data.slice(52, 68), payload,
  };
}

function half(h) {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

// `count` values of value type `dtype` at `bytes` as float32 (adasr.stream.codec._dequantise)
function dequantise(bytes, dtype, count) {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const need = dtype === 0 ? 4 * count : dtype === 1 ? 2 * count : dtype === 2 ? 4 + count : 4 + ((count + 1) >> 1);
  if (bytes.length !== need) throw new Error('value bytes do not match the count');
  const out = new Float32Array(count);
  if (dtype === 0) for (let i = 0; i < count; i++) out[i] = dv.getFloat32(4 * i, true);
  else if (dtype === 1) for (let i = 0; i < count; i++) out[i] = half(dv.getUint16(2 * i, true));
  else if (dtype === 2) {
    const scale = dv.getFloat32(0, true);
    for (let i = 0; i < count; i++) out[i] = dv.getInt8(4 + i) * scale; // one rounding: float32 product
  } else {
    const scale = dv.getFloat32(0, true);
    if (count % 2 && bytes[4 + (count >> 1)] >> 4) throw new Error('int4 values: the padding nibble is not 0');
    for (let i = 0; i < count; i++) {
      const nib = (bytes[4 + (i >> 1)] >> (4 * (i & 1))) & 0x0f, q = nib >= 8 ? nib - 16 : nib;
      if (q === -8) throw new Error('int4 values: -8 is outside [-7, 7]');
      out[i] = q * scale;
    }
  }
  return out;
}

function decodeIndices(coding, bytes, count, n) {
  const idx = new Float64Array(count);
  if (coding === 0) { // gap varints
    let pos = 0, acc = 0;
    for (let i = 0; i < count; i++) {
      let v = 0, mul = 1;
      for (;;) {
        if (pos >= bytes.length || mul > 2 ** 49) throw new Error('truncated index varints');
        const b = bytes[pos++];
        v += (b & 0x7f) * mul;
        mul *= 128;
        if (b < 0x80) break;
      }
      acc += v;
      idx[i] = acc;
    }
    if (pos !== bytes.length) throw new Error('index bytes longer than their count');
  } else if (coding === 1) { // bitmap, little bit order
    let k = 0;
    for (let j = 0; j < bytes.length && 8 * j < n; j++) {
      const b = bytes[j];
      for (let bit = 0; bit < 8; bit++) {
        if (b & (1 << bit) && 8 * j + bit < n) {
          if (k >= count) throw new Error('bitmap holds more indices than its count');
          idx[k++] = 8 * j + bit;
        }
      }
    }
    if (k !== count) throw new Error('bitmap holds fewer indices than its count');
  } else throw new Error(`unknown index coding ${coding}`);
  for (let i = 0; i < count; i++) {
    if (idx[i] >= n || (i > 0 && idx[i] <= idx[i - 1])) throw new Error('indices out of range or not increasing');
  }
  return idx;
}

export async function readRecord(bytes, what = 'model record') {
  const info = await parseRecord(bytes, what);
  const p = info.payload;
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  try {
    if (info.kind === 'full' || info.kind === 'ref') {
      const mlen = dv.getUint32(0, true);
      if (mlen > MAX_ARCH_JSON || 4 + mlen > p.length) throw new Error('architecture JSON length');
      const meta = JSON.parse(new TextDecoder().decode(p.subarray(4, 4 + mlen)));
      if (info.kind === 'ref') return { info, meta };
      return { info, meta, vector: dequantise(p.subarray(4 + mlen), info.dtype, info.nParams) };
    }
    const count = dv.getUint32(0, true), coding = p[4], ilen = dv.getUint32(5, true);
    if (9 + ilen > p.length || count > info.nParams) throw new Error('index bytes past the payload');
    const indices = decodeIndices(coding, p.subarray(9, 9 + ilen), count, info.nParams);
    return { info, indices, values: dequantise(p.subarray(9 + ilen), info.dtype, count) };
  } catch (e) {
    if (e instanceof DeltaError) throw e;
    throw new DeltaError(`${what}: damaged model record (${e.message})`);
  }
}

// The page's model: a flat float32 vector (the supernet's parameters, the ONNX graphs' weight
// buffer) kept in step with the stream. `apply` refuses a damaged, foreign or out-of-order record
// and leaves the model exactly as it was; an accepted one yields a new vector (the old one is
// never written, so a frame in flight keeps its weights) that the player swaps in between frames.
export class ModelState {
  constructor(vector, baseHash, hash, nextSegment) {
    this.vector = vector;
    this.baseHash = baseHash;
    this.hash = hash;
    this.nextSegment = nextSegment;
  }

  static async fromFull(bytes, what = 'full model record') {
    const { info, meta, vector } = await readRecord(bytes, what);
    if (info.kind !== 'full') throw new DeltaError(`${what}: a stream must start with a full model, found a ${info.kind} record`);
    const hash = await vectorHash(vector);
    if (!same(hash, info.after)) throw new DeltaError(`${what}: damaged model record (parameters do not match their hash)`);
    const state = new ModelState(vector, info.base, hash, info.segment);
    state.meta = meta;
    return state;
  }

  async check(bytes, what = 'delta') {
    const d = await readRecord(bytes, what);
    const info = d.info;
    if (info.kind !== 'delta') throw new DeltaError(`${what}: expected a delta record, found a ${info.kind} record`);
    if (!same(info.base, this.baseHash) || info.nParams !== this.vector.length) {
      throw new DeltaError(`${what}: delta belongs to another stream (base model ${hex(info.base).slice(0, 12)}, this model ${hex(this.baseHash).slice(0, 12)})`);
    }
    if (info.segment !== this.nextSegment) {
      throw new DeltaError(`${what}: out of order: delta for segment ${info.segment}, expected segment ${this.nextSegment}`);
    }
    if (!same(info.before, this.hash)) {
      throw new DeltaError(`${what}: delta for segment ${info.segment} does not apply to this model`);
    }
    return d;
  }

  async apply(bytes, what = 'delta') {
    const d = await this.check(bytes, what);
    const next = this.vector.slice();
    for (let i = 0; i < d.indices.length; i++) next[d.indices[i]] += d.values[i]; // float32 add, one rounding
    const hash = await vectorHash(next);
    if (!same(hash, d.info.after)) {
      throw new DeltaError(`${what}: segment ${d.info.segment}: the updated model does not match the encoder's (hash ${hex(hash).slice(0, 12)} vs ${hex(d.info.after).slice(0, 12)})`);
    }
    this.vector = next;
    this.hash = hash;
    this.nextSegment += 1;
    return d.info;
  }
}
