// Session store over document "sessions". Input: a session id. Per request it
// reads the session's data and preferences, counts the hit, stamps
// last-seen and appends a marker to the data (kept to 256 bytes); the output
// is "hits=N bytes=M".
import { Doc, ErrorCode, inputString, lastError, nowMs, outputString } from "edgestate-sdk";

export function handle(): i32 {
  const id = inputString();
  if (id.length == 0 || id.length > 64) return 1;
  const doc = Doc.open("sessions");
  if (doc == null) return 2;

  let old = doc.get(id + ":data");
  if (old == null && lastError != ErrorCode.NOT_FOUND) return 3;
  if (doc.get(id + ":prefs") == null && lastError != ErrorCode.NOT_FOUND) return 3;

  const hits = doc.incr(id + ":hits", 1);
  if (lastError < 0) return 4;
  const now = new Uint8Array(8);
  store<i64>(now.dataStart, nowMs());
  if (doc.set(id + ":last_seen", now) < 0) return 5;
  let len = old == null || old.length >= 256 ? 0 : old.length;
  const data = new Uint8Array(len + 1);
  if (len > 0) data.set(old!.subarray(0, len));
  data[len] = 0x2e; // '.'
  len += 1;
  if (doc.set(id + ":data", data) < 0) return 5;

  outputString("hits=" + hits.toString() + " bytes=" + len.toString());
  return 0;
}
