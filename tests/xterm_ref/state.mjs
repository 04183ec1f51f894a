// The state of an xterm.js terminal (its headless twin, or the page's) in the form of
// screen.mjs's output. Kept free of imports so the browser tests can run its text in
// the page too (tests/browser/test_terminal_snapshot.py).

function mode(cell, kind) {
  if (kind === 'fg') {
    if (cell.isFgDefault()) return 'd';
    if (cell.isFgRGB()) return `rgb:${cell.getFgColor()}`;
    return `${cell.getFgColorMode() === 16777216 ? 'p16' : 'p256'}:${cell.getFgColor()}`;
  }
  if (cell.isBgDefault()) return 'd';
  if (cell.isBgRGB()) return `rgb:${cell.getBgColor()}`;
  return `${cell.getBgColorMode() === 16777216 ? 'p16' : 'p256'}:${cell.getBgColor()}`;
}

function flags(cell) {
  return (
    (cell.isBold() ? 'b' : '') +
    (cell.isDim() ? 'd' : '') +
    (cell.isItalic() ? 'i' : '') +
    (cell.isUnderline() ? 'u' : '') +
    (cell.isBlink() ? 'k' : '') +
    (cell.isInverse() ? 'r' : '') +
    (cell.isInvisible() ? 'h' : '') +
    (cell.isStrikethrough() ? 's' : '')
  );
}

function dump(term, buffer) {
  const lines = [];
  const cell = buffer.getNullCell();
  for (let y = 0; y < buffer.length; y++) {
    const line = buffer.getLine(y);
    let text = '';
    const attrs = [];
    for (let x = 0; x < term.cols; x++) {
      line.getCell(x, cell);
      if (cell.getWidth() === 0) continue; // the second half of a wide character
      text += cell.getChars() || ' ';
      attrs.push(`${mode(cell, 'fg')}/${mode(cell, 'bg')}/${flags(cell)}`);
    }
    lines.push([text, attrs]);
  }
  return { length: buffer.length, baseY: buffer.baseY, lines };
}

/** {active, cursor, cursorHidden, title, modes, buffers: {normal, alternate}} of `term`. */
export function termState(term, title) {
  const active = term.buffer.active;
  const core = term._core;
  return {
    active: active.type,
    cursor: { x: active.cursorX, y: active.cursorY },
    cursorHidden: Boolean(core?.coreService?.isCursorHidden),
    title,
    modes: term.modes,
    buffers: { normal: dump(term, term.buffer.normal), alternate: dump(term, term.buffer.alternate) }
  };
}
