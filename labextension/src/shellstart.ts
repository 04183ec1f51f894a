/**
 * Two small rules of the Kernel Terminal, kept apart as pure functions:
 *
 * - where a terminal opened from the launcher starts (the file browser's
 *   current directory, as JupyterLab's own terminal does), and
 * - how output that came through a pipe is shown: a PTY's line discipline
 *   turns LF into CRLF (`onlcr`); pipe output (a non-tty process or session)
 *   has bare LFs, which xterm.js shows as a staircase.
 */
import { Stream } from './protocol';

/**
 * The absolute directory for the launcher's `cwd` (a path relative to the
 * server's root), or undefined (the kernel's current directory) when the
 * server's root is unknown. `home` expands a root given as `~`.
 */
export function launcherStartDir(
  relative: string | undefined,
  serverRoot: string | undefined,
  home?: string
): string | undefined {
  if (relative === undefined || !serverRoot) {
    return undefined;
  }
  let root = serverRoot;
  if (root === '~' || root.startsWith('~/')) {
    if (!home) {
      return undefined;
    }
    root = home + root.slice(1);
  }
  const parts = relative.split('/').filter(p => p && p !== '.');
  return [root.replace(/\/+$/, ''), ...parts].join('/') || '/';
}

const LF = 0x0a;
const CR = 0x0d;

/** Output as a terminal shows it: pipe streams get `onlcr` (every LF → CRLF). */
export function asTerminalOutput(stream: Stream, data: Uint8Array): Uint8Array {
  if (stream === 'pty') {
    return data;
  }
  let lfs = 0;
  for (let i = 0; i < data.length; i++) {
    if (data[i] === LF) {
      lfs++;
    }
  }
  if (lfs === 0) {
    return data;
  }
  const out = new Uint8Array(data.length + lfs);
  let j = 0;
  for (let i = 0; i < data.length; i++) {
    if (data[i] === LF) {
      out[j++] = CR;
    }
    out[j++] = data[i];
  }
  return out;
}
