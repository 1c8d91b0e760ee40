// A y-websocket client for tests/node/test_yjs_tokens.py that writes only when told.
// Usage: node viewer.mjs ws://127.0.0.1:PORT/yjs DOC TOKEN
// Prints JSON lines: {"event":"synced","root":{...}} once, {"event":"seen",...} for
// every remote key change, {"event":"closed","code":N} for every close; a stdin line
// "write KEY" sets root[KEY] = [9]. Exits when stdin closes.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import * as readline from 'node:readline'

const [serverUrl, room, token] = process.argv.slice(2)
const doc = new Y.Doc()
const root = doc.getMap('root')
const provider = new WebsocketProvider(serverUrl, room, doc, {
  WebSocketPolyfill: WebSocket,
  params: { token },
})
const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const dump = () => Object.fromEntries([...root.entries()].map(([k, v]) => [k, Array.from(v)]))

provider.on('connection-close', (event) => say({ event: 'closed', code: event ? event.code : null }))
provider.once('sync', () => {
  say({ event: 'synced', root: dump() })
  root.observe((event) => {
    if (event.transaction.local) return
    for (const key of event.keysChanged) {
      const value = root.get(key)
      say({ event: 'seen', key, value: value === undefined ? null : Array.from(value) })
    }
  })
})

const lines = readline.createInterface({ input: process.stdin })
lines.on('line', (line) => {
  const [command, key] = line.trim().split(' ')
  if (command === 'write') root.set(key, new Uint8Array([9]))
})
lines.on('close', () => {
  provider.destroy()
  process.exit(0)
})
