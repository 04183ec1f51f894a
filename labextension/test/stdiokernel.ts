/**
 * A kernel connection for the unit tests whose `codex.exec` comms are each
 * served by a real `codex-exec serve` (one server process per comm).
 *
 * Why: the panel's modules talk to a `Kernel.IKernelConnection`; running
 * JupyterLab in a browser is the browser tests' job (tests/browser). Here only
 * the comm is stood in for: the process table, its seqs, flow control and
 * `process/read` are the shipped server's. Binary buffers travel as base64,
 * the stdio form, which the connection accepts on comms too.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { PromiseDelegate } from '@lumino/coreutils';
import { Signal } from '@lumino/signaling';

import { ExecConnection } from '../src/connection';
import { KernelGoneError } from '../src/kernels';

// The modules under test use the page's timers (`window.setTimeout`). Loaded
// after JupyterLab's services on purpose (see dom.ts); a DOM test has its window.
(globalThis as { window?: unknown }).window ??= globalThis;

/** The server's console script (the venv `make setup` made), or $CODEX_EXEC. */
export const CODEX_EXEC = process.env.CODEX_EXEC ?? path.resolve(__dirname, '../../../.venv/bin/codex-exec');

/** A HOME of the tests' own (the server keeps its session store there). */
const HOME = fs.mkdtempSync(path.join(os.tmpdir(), 'codex-exec-ts-'));
process.on('exit', () => fs.rmSync(HOME, { recursive: true, force: true }));

let commCount = 0;

/** `{buffer: i}` references replaced by the base64 of the buffer. */
function inlineBuffers(value: unknown, buffers: ArrayBufferView[]): unknown {
  if (Array.isArray(value)) {
    return value.map(v => inlineBuffers(v, buffers));
  }
  if (value && typeof value === 'object') {
    const keys = Object.keys(value);
    const ref = (value as { buffer?: unknown }).buffer;
    if (keys.length === 1 && typeof ref === 'number') {
      const b = buffers[ref];
      return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');
    }
    return Object.fromEntries(keys.map(k => [k, inlineBuffers((value as Record<string, unknown>)[k], buffers)]));
  }
  return value;
}

/** Call `onLine` with each line the process writes to stdout. */
function onLines(proc: ChildProcess, onLine: (line: string) => void): void {
  let rest = '';
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (text: string) => {
    const lines = (rest + text).split('\n');
    rest = lines.pop()!;
    lines.forEach(onLine);
  });
}

/** One comm = one `codex-exec serve` process. */
export class StdioComm {
  constructor(
    private _kernel: StdioKernel,
    readonly targetName: string
  ) {
    this.commId = `comm-${++commCount}`;
  }

  readonly commId: string;
  onMsg: ((msg: unknown) => void | PromiseLike<void>) | null = null;
  onClose: ((msg: unknown) => void | PromiseLike<void>) | null = null;
  isDisposed = false;
  /** Every message the server sent, in order (tests read them). */
  readonly received: Record<string, unknown>[] = [];
  /** Every message the client sent, in order (buffers as base64, as sent). */
  readonly sent: Record<string, unknown>[] = [];
  /** Drop a server message instead of delivering it (a lossy IOPub). */
  drop: (msg: Record<string, unknown>) => boolean = () => false;

  get isOpen(): boolean {
    return this._proc !== null && !this.isDisposed;
  }

  open(): void {
    const proc = spawn(CODEX_EXEC, ['serve'], {
      env: { ...process.env, HOME },
      stdio: ['pipe', 'pipe', 'inherit']
    });
    this._proc = proc;
    this._exited = new Promise(resolve => proc.on('exit', () => resolve()));
    this._kernel.comms.push(this);
    onLines(proc, line => {
      const msg = JSON.parse(line) as Record<string, unknown>;
      if (typeof msg.id === 'string' && msg.id.startsWith('test-')) {
        const waiter = this._testWaiters.get(msg.id);
        this._testWaiters.delete(msg.id);
        if (msg.error) {
          waiter?.reject(new Error(JSON.stringify(msg.error)));
        } else {
          waiter?.resolve(msg.result);
        }
        return;
      }
      this.received.push(msg);
      if (!this.isDisposed && !this.drop(msg)) {
        void this.onMsg?.({ content: { comm_id: this.commId, data: msg }, buffers: [] });
      }
    });
  }

  send(data: Record<string, unknown>, _metadata?: unknown, buffers: ArrayBufferView[] = []): void {
    if (this.isDisposed || !this._proc) {
      throw new Error('comm closed');
    }
    const wire = inlineBuffers(data, buffers) as Record<string, unknown>;
    this.sent.push(wire);
    this._proc.stdin!.write(JSON.stringify(wire) + '\n');
  }

  /** The client closes the comm: the server sees EOF and ends its processes. */
  close(): void {
    this._end();
  }

  /** The kernel closes the comm (as a kernel that drops it would). */
  closeFromKernel(): void {
    this._end();
    void this.onClose?.({ content: { comm_id: this.commId, data: {} } });
  }

  /** A request of the test's own on this comm's server (its answer is not delivered). */
  testRequest<T>(method: string, params: Record<string, unknown>): Promise<T> {
    const id = `test-${++this._testIds}`;
    const waiter = new PromiseDelegate<unknown>();
    this._testWaiters.set(id, waiter);
    this._proc!.stdin!.write(JSON.stringify({ jsonrpc: '2.0', id, method, params }) + '\n');
    return waiter.promise as Promise<T>;
  }

  /** Resolves when the server process has exited. */
  get exited(): Promise<void> {
    return this._exited;
  }

  private _end(): void {
    if (this.isDisposed) {
      return;
    }
    this.isDisposed = true;
    this._proc?.stdin!.end();
  }

  private _proc: ChildProcess | null = null;
  private _exited: Promise<void> = Promise.resolve();
  private _testIds = 0;
  private _testWaiters = new Map<string, PromiseDelegate<unknown>>();
}

/** The parts of `Kernel.IKernelConnection` the panel's modules use. */
export class StdioKernel {
  constructor(readonly id: string) {}

  readonly name = 'codex-exec';
  readonly comms: StdioComm[] = [];
  readonly statusChanged = new Signal<this, string>(this);
  readonly connectionStatusChanged = new Signal<this, string>(this);
  readonly disposed = new Signal<this, void>(this);
  isDisposed = false;
  status = 'idle';
  connectionStatus = 'connected';
  subshellId: string | null = null;

  /** Comms whose server still runs. */
  get openComms(): StdioComm[] {
    return this.comms.filter(c => c.isOpen);
  }

  createComm(targetName: string): StdioComm {
    return new StdioComm(this, targetName);
  }

  async reconnect(): Promise<void> {
    this.connectionStatus = 'connected';
    this.connectionStatusChanged.emit('connected');
  }

  dispose(): void {
    if (!this.isDisposed) {
      this.isDisposed = true;
      this.disposed.emit();
    }
  }

  /** End every server (the end of a test). */
  async shutdown(): Promise<void> {
    for (const c of this.comms) {
      c.close();
    }
    await Promise.all(this.comms.map(c => c.exited));
  }
}

/**
 * A kernel pool over {@link StdioKernel}s whose `acquire` a test can hold
 * back ({@link gate}) to order concurrent connects as it likes.
 */
export class TestPool {
  constructor(...ids: string[]) {
    for (const id of ids) {
      this.kernels.set(id, new StdioKernel(id));
    }
  }

  readonly kernels = new Map<string, StdioKernel>();
  /** Leases handed out and not released, per kernel. */
  readonly leases = new Map<string, number>();

  kernel(id: string): StdioKernel {
    return this.kernels.get(id)!;
  }

  /** Hold every `acquire(id)` from now until {@link open}. */
  gate(id: string): void {
    this._gates.set(id, new PromiseDelegate<void>());
  }

  open(id: string): void {
    this._gates.get(id)?.resolve();
    this._gates.delete(id);
  }

  /** Make the next `n` acquires of `id` fail (a server that does not answer). */
  fail(id: string, n: number): void {
    this._failures.set(id, n);
  }

  async acquire(id: string): Promise<{ kernel: never; info: null; release: () => void }> {
    await this._gates.get(id)?.promise;
    const failures = this._failures.get(id) ?? 0;
    if (failures > 0) {
      this._failures.set(id, failures - 1);
      throw new Error('the server did not answer');
    }
    const kernel = this.kernels.get(id);
    if (!kernel) {
      throw new KernelGoneError(id);
    }
    this.leases.set(id, (this.leases.get(id) ?? 0) + 1);
    let released = false;
    return {
      kernel: kernel as never,
      info: null,
      release: () => {
        if (!released) {
          released = true;
          this.leases.set(id, this.leases.get(id)! - 1);
        }
      }
    };
  }

  async listKernels(): Promise<{ id: string; name: string }[]> {
    return Array.from(this.kernels.values(), k => ({ id: k.id, name: k.name }));
  }

  async shutdown(): Promise<void> {
    await Promise.all(Array.from(this.kernels.values(), k => k.shutdown()));
  }

  private _gates = new Map<string, PromiseDelegate<void>>();
  private _failures = new Map<string, number>();
}

/** A connection on a kernel of its own (one server); `shutdown()` ends it. */
export async function openConnection(): Promise<{ kernel: StdioKernel; comm: StdioComm; conn: ExecConnection }> {
  const kernel = new StdioKernel('unit');
  const conn = await ExecConnection.open(kernel as never, { clientName: 'unit-test', loadExtension: false });
  return { kernel, comm: kernel.comms[kernel.comms.length - 1], conn };
}

/** The `params` of every notification `method` the client sent on `comm`. */
export function sentNotifications(comm: StdioComm, method: string): Record<string, unknown>[] {
  return comm.sent.filter(m => m.method === method && m.id === undefined).map(m => m.params as Record<string, unknown>);
}

/** The suite's one deadline factor (tests/waiting.py reads the same variable). */
export const TIMEOUT_SCALE = Number(process.env.CODEX_EXEC_TEST_TIMEOUT_SCALE ?? '2') || 2;

/** Wait until `predicate()` holds (checked every 10 ms), or fail after `timeoutMs`
 * times the deadline factor: a loaded CI machine is slow, never wrong. */
export async function waitFor(predicate: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  timeoutMs *= TIMEOUT_SCALE;
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise(resolve => setTimeout(resolve, 10));
  }
}
