/**
 * `process/snapshot`: a process's current screen, drawn for a fresh terminal.
 *
 * Why: replaying retained raw bytes (what terminado does) shows a blank or
 * garbled screen once retention evicted the bytes that drew a full-screen
 * program, or when it drew in the alternate buffer. The kernel keeps a screen
 * model per PTY process and answers with bytes that redraw the screen and its
 * modes, plus the `seq` they reflect; the client continues after that seq,
 * so nothing is lost and nothing doubled (docs/protocol.md).
 */
import { ExecConnection, IWithBuffers } from './connection';
import { ErrorCode, ISize, resolveBytes, RpcError, WireBytes } from './protocol';

/** The wire result of `process/snapshot`. */
export interface ISnapshotResult {
  processId: string;
  seq: number;
  rows: number;
  cols: number;
  chunk: WireBytes;
  alternateScreen: boolean;
  title: string | null;
  exited: boolean;
  closed: boolean;
}

/** A snapshot with its chunk resolved to bytes. */
export interface IScreenSnapshot {
  seq: number;
  rows: number;
  cols: number;
  /** Bytes that redraw the screen on a freshly reset terminal of `rows`x`cols`. */
  data: Uint8Array;
  title: string | null;
  exited: boolean;
  closed: boolean;
}

/**
 * The screen of `processId` drawn for a terminal of `size`, or null when a
 * snapshot cannot be had and the caller should replay retained output as
 * before: a kernel without the method (-32601, an older version) or a
 * process that is not a tty (-32602). Other errors (an unknown process,
 * a lost connection) are thrown as they are.
 */
export async function fetchSnapshot(
  conn: ExecConnection,
  processId: string,
  size: ISize
): Promise<IScreenSnapshot | null> {
  let result: ISnapshotResult & IWithBuffers;
  try {
    result = await conn.request<ISnapshotResult & IWithBuffers>('process/snapshot', {
      processId,
      rows: size.rows,
      cols: size.cols
    });
  } catch (err) {
    if (err instanceof RpcError && (err.code === ErrorCode.methodNotFound || err.code === ErrorCode.invalidParams)) {
      return null;
    }
    throw err;
  }
  return {
    seq: result.seq,
    rows: result.rows,
    cols: result.cols,
    data: resolveBytes(result.chunk, result.__buffers__),
    title: result.title ?? null,
    exited: !!result.exited,
    closed: !!result.closed
  };
}
