/**
 * Wire types of the codex-exec protocol v1 (see docs/protocol.md).
 *
 * Kept free of any JupyterLab import so the shapes can be read (and tested)
 * on their own; `connection.ts` is the only module that puts them on a comm.
 */

/** The comm target the kernel registers. */
export const COMM_TARGET = 'codex.exec';

/** The protocol version this client speaks. */
export const PROTOCOL_VERSION = 'codex-exec.v1';

/** A bytes field: base64 text or, on a comm, a reference to a binary buffer. */
export type WireBytes = string | { buffer: number };

export interface IRequest {
  id: number;
  method: string;
  params?: unknown;
}

export interface IRpcError {
  code: number;
  message: string;
  data?: unknown;
}

export interface IResponse {
  id: number;
  result?: unknown;
  error?: IRpcError;
}

export interface INotification {
  method: string;
  params?: unknown;
}

export interface ISize {
  rows: number;
  cols: number;
}

export interface IInitializeResult {
  protocolVersion: string;
  sessionId: string;
  server: { name: string; version: string };
  environment: {
    shell?: string;
    cwd?: string;
    home?: string;
    hostname?: string;
    platform?: string;
  };
}

export interface IStartParams {
  processId?: string;
  argv: string[];
  cwd?: string;
  env?: Record<string, string>;
  tty?: boolean;
  size?: ISize;
  title?: string;
}

export interface IStartResult {
  processId: string;
  pid: number;
}

export type Stream = 'stdout' | 'stderr' | 'pty';

/** `process/output` after its chunk has been resolved to bytes. */
export interface IOutputEvent {
  kind: 'output';
  processId: string;
  seq: number;
  stream: Stream;
  data: Uint8Array;
}

export interface IExitedEvent {
  kind: 'exited';
  processId: string;
  seq: number;
  exitCode: number | null;
  signal: string | null;
}

export interface IClosedEvent {
  kind: 'closed';
  processId: string;
  seq: number;
}

/** Every event that takes a seq number. */
export type ProcessEvent = IOutputEvent | IExitedEvent | IClosedEvent;

export interface IReadResult {
  chunks: { seq: number; stream: Stream; chunk: WireBytes }[];
  nextSeq: number;
  exited: boolean;
  exitCode: number | null;
  closed: boolean;
  failure: string | null;
  firstRetainedSeq: number;
}

export interface IProcessInfo {
  processId: string;
  pid: number;
  argv: string[];
  cwd: string;
  tty: boolean;
  title: string | null;
  startedAt: string;
  exited: boolean;
  exitCode: number | null;
  /** The signal that ended it (an extension of process/list), else null. */
  signal?: string | null;
  closed: boolean;
  nextSeq: number;
}

export interface ISessionInfo {
  id: string;
  pid: number | null;
  argv: string[];
  /** The command as the user typed it (`%exec --bg CMD`), else null. */
  display?: string | null;
  tty: boolean;
  status: 'running' | 'exited' | 'lost';
  exitCode: number | null;
  signal?: string | null;
  createdAt: string;
  endedAt: string | null;
  outputBytes: number;
}

export type SignalName =
  | 'interrupt'
  | 'terminate'
  | 'kill'
  | 'hangup'
  | 'quit'
  | 'stop'
  | 'continue'
  | 'usr1'
  | 'usr2'
  | 'winch';

/** Error codes of the protocol. */
export const ErrorCode = {
  /** Not on the wire: this client's own failure (the connection ended, no reply in time). */
  transport: 0,
  parse: -32700,
  invalidRequest: -32600,
  methodNotFound: -32601,
  invalidParams: -32602,
  internal: -32603,
  limit: -32010
} as const;

/** A JSON-RPC error response, or a transport failure (`ErrorCode.transport`). */
export class RpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown
  ) {
    super(message);
    this.name = 'RpcError';
  }
}

/** Decode standard base64 into bytes (the stdio form, accepted on comms too). */
export function base64ToBytes(text: string): Uint8Array {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) {
    out[i] = bin.charCodeAt(i);
  }
  return out;
}

/** A comm message's binary buffers (`{buffer: i}` fields point into them). */
export type Buffers = readonly (ArrayBuffer | ArrayBufferView)[] | undefined;

/** Turn a wire bytes field into bytes, resolving `{buffer: i}` references. */
export function resolveBytes(value: WireBytes, buffers?: Buffers): Uint8Array {
  if (typeof value === 'string') {
    return base64ToBytes(value);
  }
  const buf = buffers?.[value.buffer];
  if (!buf) {
    throw new RpcError(ErrorCode.transport, `missing binary buffer ${value.buffer}`);
  }
  if (buf instanceof ArrayBuffer) {
    return new Uint8Array(buf);
  }
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** The typed event of a `process/output|exited|closed` notification, else null. */
export function toProcessEvent(data: INotification, buffers?: Buffers): ProcessEvent | null {
  const p = (data.params ?? {}) as Record<string, unknown>;
  const processId = String(p.processId ?? '');
  const seq = Number(p.seq ?? 0);
  switch (data.method) {
    case 'process/output':
      return {
        kind: 'output',
        processId,
        seq,
        stream: (p.stream as Stream) ?? 'pty',
        data: resolveBytes(p.chunk as WireBytes, buffers)
      };
    case 'process/exited':
      return {
        kind: 'exited',
        processId,
        seq,
        exitCode: (p.exitCode as number | null) ?? null,
        signal: (p.signal as string | null) ?? null
      };
    case 'process/closed':
      return { kind: 'closed', processId, seq };
    default:
      return null;
  }
}
