// Client-to-client timing with the off-the-shelf y-websocket client, for scripts/bench_yjs.py.
// Usage: node bench_yjs.mjs WRITER_URL READER_URL ROOM SAMPLES BURST WRITER_TOKEN READER_TOKEN
// One writer and READERS (2) readers, each its own Y.Doc and WebsocketProvider, in
// this one process so that all timestamps come from one clock. Prints one JSON line:
// {"latency_ms": [...], "burst_s": S, "burst": N}. Latency: one write at a time, from
// just before the writer's transaction to each reader's observer (every reader is a
// sample). Burst: N writes, one transaction (one update message) each, issued at
// once; the time until every reader has seen all N.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const [writerUrl, readerUrl, room, samplesArg, burstArg, writerToken, readerToken] = process.argv.slice(2)
const samples = Number(samplesArg)
const burst = Number(burstArg)
const nReaders = 2

const connect = (url, token) => {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(url, room, doc, {
    WebSocketPolyfill: WebSocket,
    params: token ? { token } : {},
    disableBc: true,
  })
  return { doc, provider, root: doc.getMap('root') }
}
const synced = (c) => new Promise((resolve) => {
  if (c.provider.synced) resolve()
  else c.provider.once('sync', () => resolve())
})

const writer = connect(writerUrl, writerToken)
const readers = Array.from({ length: nReaders }, () => connect(readerUrl, readerToken))
await Promise.all([writer, ...readers].map(synced))

let waiting = null // {prefix, count, need, resolve}
for (const r of readers) {
  r.seen = new Set()
  r.root.observe((event) => {
    const now = performance.now()
    for (const key of event.keysChanged) {
      if (waiting === null || !key.startsWith(waiting.prefix) || r.seen.has(key)) continue
      r.seen.add(key)
      waiting.arrive(r, key, now)
    }
  })
}

const value = new Uint8Array(16).fill(112)
const latency = []
for (let i = 0; i < samples; i++) {
  const key = `lat-${i}`
  let left = readers.length
  const done = new Promise((resolve) => {
    waiting = { prefix: 'lat-', arrive: (_r, k, now) => {
      if (k !== key) return
      latency.push(now - t0)
      if (--left === 0) resolve()
    } }
  })
  const t0 = performance.now()
  writer.root.set(key, value)
  await done
}

let left = readers.length * burst
const burstDone = new Promise((resolve) => {
  waiting = { prefix: 'burst-', arrive: () => { if (--left === 0) resolve() } }
})
const b0 = performance.now()
for (let i = 0; i < burst; i++) writer.root.set(`burst-${i}`, value)
await burstDone
const burstS = (performance.now() - b0) / 1000

process.stdout.write(JSON.stringify({ latency_ms: latency, burst_s: burstS, burst }) + '\n')
for (const c of [writer, ...readers]) c.provider.destroy()
process.exit(0)
