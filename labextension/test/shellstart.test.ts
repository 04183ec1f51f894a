/** The Kernel Terminal's two start rules: pipe output as `onlcr`, the launcher's directory. */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { asTerminalOutput, launcherStartDir } from '../src/shellstart';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array): string => new TextDecoder().decode(b);

test('pipe output gets CRLF for every LF; PTY output is left exactly as it came', () => {
  assert.equal(text(asTerminalOutput('stdout', bytes('a\nb\n\nc'))), 'a\r\nb\r\n\r\nc');
  assert.equal(text(asTerminalOutput('stderr', bytes('x\n'))), 'x\r\n');
  const pty = bytes('a\nb\r\n');
  assert.equal(asTerminalOutput('pty', pty), pty);
  const plain = bytes('no newline');
  assert.equal(asTerminalOutput('stdout', plain), plain);
});

test("the launcher's directory is made absolute against the server's root", () => {
  assert.equal(launcherStartDir('data/raw', '/srv/nb'), '/srv/nb/data/raw');
  assert.equal(launcherStartDir('', '/srv/nb/'), '/srv/nb');
  assert.equal(launcherStartDir('./x', '~/work', '/home/u'), '/home/u/work/x');
  assert.equal(launcherStartDir('x', '~', undefined), undefined);
  assert.equal(launcherStartDir(undefined, '/srv'), undefined);
  assert.equal(launcherStartDir('x', undefined), undefined);
  assert.equal(launcherStartDir('', '/'), '/');
});
