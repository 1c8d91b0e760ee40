// edgestate guest SDK for AssemblyScript: wrappers over the host ABI of import
// module "edgestate" (specified in schemas/host-abi.json, explained in
// docs/modules.md).
//
//     import { Doc, input, output, ok } from "edgestate-sdk";
//     export function handle(): i32 {
//       const doc = Doc.open("counters");
//       if (doc == null) return 2;
//       ...
//       return 0;
//     }
//
// Build with `edgestate build` (asc --runtime stub -Oz, abort routed to
// `abortHandler` below, which logs the message before trapping).
//
// Calls that can fail return null (or a negative code) and leave the ABI code
// in `lastError`; strings go to the host as UTF-8.

// --- the raw imports, exactly as schemas/host-abi.json declares them -----------

export namespace raw {
  @external("edgestate", "doc_open")
  export declare function doc_open(name_ptr: usize, name_len: usize): i32;
  @external("edgestate", "kv_get")
  export declare function kv_get(doc: i32, key_ptr: usize, key_len: usize, out_ptr: usize, out_cap: usize): i32;
  @external("edgestate", "kv_set")
  export declare function kv_set(doc: i32, key_ptr: usize, key_len: usize, val_ptr: usize, val_len: usize): i32;
  @external("edgestate", "kv_delete")
  export declare function kv_delete(doc: i32, key_ptr: usize, key_len: usize): i32;
  @external("edgestate", "kv_incr")
  export declare function kv_incr(doc: i32, key_ptr: usize, key_len: usize, delta: i64, out_ptr: usize): i32;
  @external("edgestate", "kv_scan")
  export declare function kv_scan(doc: i32, prefix_ptr: usize, prefix_len: usize, cursor_ptr: usize, cursor_len: usize, out_ptr: usize, out_cap: usize): i32;
  @external("edgestate", "input_len")
  export declare function input_len(): i32;
  @external("edgestate", "input_read")
  export declare function input_read(out_ptr: usize, out_cap: usize): i32;
  @external("edgestate", "output_write")
  export declare function output_write(ptr: usize, len: usize): i32;
  @external("edgestate", "log")
  export declare function log(level: i32, ptr: usize, len: usize): void;
  @external("edgestate", "now_ms")
  export declare function now_ms(): i64;
}

// --- errors ----------------------------------------------------------------------

/** The ABI's negative codes. */
export enum ErrorCode {
  NOT_FOUND = -1,
  ACCESS_DENIED = -2,
  UNKNOWN_DOCUMENT = -3,
  BAD_HANDLE = -4,
  INVALID_KEY = -5,
  VALUE_TOO_LARGE = -6,
  WRONG_TYPE = -7,
  INVALID_CURSOR = -8,
  LIMIT_EXCEEDED = -9,
  INVALID_ARGUMENT = -10,
}

/** The code of the last call that failed (0 after one that succeeded). */
export let lastError: i32 = 0;

/** The entry status for an ABI code: 100 minus it (NOT_FOUND 101 .. 110), as the Rust and Zig SDKs. */
export function status(code: i32): i32 {
  return 100 - code;
}

function check(rc: i32): i32 {
  lastError = rc < 0 ? rc : 0;
  return rc;
}

// UTF-8 bytes of a string, for keys and names (AssemblyScript strings are UTF-16).
function utf8(s: string): ArrayBuffer {
  return String.UTF8.encode(s);
}

// --- documents -------------------------------------------------------------------

/** A document handle from Doc.open; valid for this invocation. */
export class Doc {
  constructor(public readonly handle: i32) {}

  /** Open a document the manifest grants; null (lastError set) if refused. */
  static open(name: string): Doc | null {
    const n = utf8(name);
    const rc = check(raw.doc_open(changetype<usize>(n), n.byteLength));
    return rc < 0 ? null : new Doc(rc);
  }

  /** The value of key, or null when absent (lastError NOT_FOUND) or refused. */
  get(key: string): Uint8Array | null {
    return this.getBytes(Uint8Array.wrap(utf8(key)));
  }

  /** get() with the key as bytes. Retries once with the length the host reports. */
  getBytes(key: Uint8Array): Uint8Array | null {
    let buf = new Uint8Array(256);
    let rc = check(raw.kv_get(this.handle, key.dataStart, key.length, buf.dataStart, buf.length));
    if (rc > buf.length) {
      buf = new Uint8Array(rc);
      rc = check(raw.kv_get(this.handle, key.dataStart, key.length, buf.dataStart, buf.length));
    }
    if (rc < 0 || rc > buf.length) return null;
    return buf.subarray(0, rc);
  }

  /** Stage value under key; 0 or a negative ErrorCode. */
  set(key: string, value: Uint8Array): i32 {
    return this.setBytes(Uint8Array.wrap(utf8(key)), value);
  }

  /** set() with the key as bytes. */
  setBytes(key: Uint8Array, value: Uint8Array): i32 {
    return check(raw.kv_set(this.handle, key.dataStart, key.length, value.dataStart, value.length));
  }

  /** Stage the deletion of key (also fine when absent); 0 or a negative ErrorCode. */
  delete(key: string): i32 {
    const k = utf8(key);
    return check(raw.kv_delete(this.handle, changetype<usize>(k), k.byteLength));
  }

  /** Add delta to the counter at key; its new total (0 with lastError set if refused). */
  incr(key: string, delta: i64): i64 {
    return this.incrBytes(Uint8Array.wrap(utf8(key)), delta);
  }

  /** incr() with the key as bytes. */
  incrBytes(key: Uint8Array, delta: i64): i64 {
    const total = memory.data(8);
    if (check(raw.kv_incr(this.handle, key.dataStart, key.length, delta, total)) < 0) return 0;
    return load<i64>(total);
  }

  /** One page of keys under prefix; pass page.cursor back for the next (null: start). */
  scan(prefix: string, cursor: Uint8Array | null = null): ScanPage | null {
    const p = utf8(prefix);
    const c = cursor == null ? new Uint8Array(0) : cursor;
    let buf = new Uint8Array(4096);
    let rc = 0;
    for (let i = 0; i < 2; i++) {
      rc = check(raw.kv_scan(this.handle, changetype<usize>(p), p.byteLength, c.dataStart, c.length, buf.dataStart, buf.length));
      if (rc <= buf.length) break;
      buf = new Uint8Array(rc);
    }
    if (rc < 0) return null;
    return ScanPage.parse(buf.subarray(0, rc));
  }
}

/** A decoded scan page: msgpack [keys, next_cursor | nil]. */
export class ScanPage {
  keys: string[] = [];
  cursor: Uint8Array | null = null;

  static parse(page: Uint8Array): ScanPage | null {
    const out = new ScanPage();
    let i = 0;
    if (page.length < 2 || page[0] != 0x92) return null;
    i = 1;
    let count: i32 = 0;
    const tag = page[i++];
    if ((tag & 0xf0) == 0x90) count = tag & 0x0f;
    else if (tag == 0xdc) { count = (i32(page[i]) << 8) | page[i + 1]; i += 2; }
    else if (tag == 0xdd) { count = (i32(page[i]) << 24) | (i32(page[i + 1]) << 16) | (i32(page[i + 2]) << 8) | page[i + 3]; i += 4; }
    else return null;
    for (let k = 0; k < count; k++) {
      const t = page[i++];
      let n: i32 = 0;
      if ((t & 0xe0) == 0xa0) n = t & 0x1f;
      else if (t == 0xd9) n = page[i++];
      else if (t == 0xda) { n = (i32(page[i]) << 8) | page[i + 1]; i += 2; }
      else return null;
      out.keys.push(String.UTF8.decodeUnsafe(page.dataStart + i, n));
      i += n;
    }
    const c = page[i++];
    if (c == 0xc4) { const n = page[i++]; out.cursor = page.slice(i, i + n); }
    else if (c == 0xc5) { const n = (i32(page[i]) << 8) | page[i + 1]; i += 2; out.cursor = page.slice(i, i + n); }
    return out;
  }
}

// --- input, output, log, time ------------------------------------------------------

/** The invocation's input as bytes. */
export function input(): Uint8Array {
  const buf = new Uint8Array(raw.input_len());
  raw.input_read(buf.dataStart, buf.length);
  return buf;
}

/** The invocation's input as text (UTF-8). */
export function inputString(): string {
  const buf = input();
  return String.UTF8.decodeUnsafe(buf.dataStart, buf.length);
}

/** Append bytes to the output (past the manifest's limit the invocation traps). */
export function output(bytes: Uint8Array): void {
  raw.output_write(bytes.dataStart, bytes.length);
}

/** Append text (as UTF-8) to the output. */
export function outputString(text: string): void {
  const b = utf8(text);
  raw.output_write(changetype<usize>(b), b.byteLength);
}

export enum Level { TRACE = 0, DEBUG = 1, INFO = 2, WARN = 3, ERROR = 4 }

/** One log line (truncated at 1 KiB by the host, at most 64 per invocation). */
export function log(level: Level, message: string): void {
  const b = utf8(message);
  raw.log(level, changetype<usize>(b), b.byteLength);
}

/** Wall-clock milliseconds since the Unix epoch. */
export function nowMs(): i64 {
  return raw.now_ms();
}

/** UTF-8 bytes of a string, as a Uint8Array (for values). */
export function bytes(s: string): Uint8Array {
  return Uint8Array.wrap(utf8(s));
}

// Every `throw`, failed assert and out-of-bounds access calls abort: log what
// and where (the host has no `env.abort`), then trap. `edgestate build` passes
// `--use abort=edgestate-sdk/abortHandler`.
export function abortHandler(message: string | null, file: string | null, line: u32, column: u32): void {
  let text = "abort";
  if (message != null) text += ": " + message;
  if (file != null) text += " at " + file + ":" + line.toString() + ":" + column.toString();
  log(Level.ERROR, text);
  unreachable();
}
