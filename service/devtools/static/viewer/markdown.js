// A small, safe renderer for the GitHub-flavoured Markdown that CDS Hooks cards carry in `detail`.
//
// Safety by construction: it builds DOM nodes with createElement/createTextNode only and never parses
// a string as HTML, so raw HTML in the input (`<img onerror=…>`) stays visible text. Links are made
// only for http(s) and mailto URLs. The page's Content-Security-Policy (Trusted Types) makes any
// HTML sink throw, so a later edit that reaches for innerHTML fails loudly instead of opening a hole.
//
// Supported: paragraphs, soft and hard line breaks, ATX headings, bullet and ordered lists (nested by
// indentation), pipe tables with alignment, block quotes, fenced code, thematic breaks, **strong**,
// *emphasis* / _emphasis_, ~~strike~~, `code`, [links](https://…), <https://autolinks>, backslash
// escapes and character references. Images are shown as their alt text (nothing is fetched).
"use strict";

(function (global) {
  const PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
  const NAMED_ENTITIES = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: "\u00a0" };
  const SAFE_PROTOCOLS = ["http:", "https:", "mailto:"];

  const LIST_ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])( +|$)/;
  const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
  const RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
  const FENCE = /^ {0,3}(`{3,}|~{3,})/;
  const QUOTE = /^ {0,3}> ?/;
  const TABLE_DELIMITER = /^ {0,3}\|?[ \t]*:?-+:?[ \t]*(\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$/;

  function safeUrl(url) {
    try {
      const parsed = new URL(url, global.location ? global.location.href : undefined);
      return SAFE_PROTOCOLS.includes(parsed.protocol) ? parsed.href : null;
    } catch (e) {
      return null;
    }
  }

  function link(url, children) {
    const href = safeUrl(url);
    if (href === null) {
      // not a link we dare follow: keep its words
      const span = document.createElement("span");
      span.append(...children);
      return span;
    }
    const a = document.createElement("a");
    a.href = href;
    a.rel = "noopener noreferrer";
    a.target = "_blank";
    a.append(...children);
    return a;
  }

  // ---- inline ------------------------------------------------------------------------------------

  function runLength(src, i, ch) {
    let n = 0;
    while (src[i + n] === ch) n++;
    return n;
  }

  function isSpace(ch) {
    return ch === undefined || /\s/.test(ch);
  }

  function isWordChar(ch) {
    return ch !== undefined && /[\p{L}\p{N}]/u.test(ch);
  }

  // Index just past a code span starting at i (a run of n backticks), or -1 if it is not closed.
  function codeSpanEnd(src, i, n) {
    let j = i + n;
    while (j < src.length) {
      if (src[j] === "`") {
        const m = runLength(src, j, "`");
        if (m === n) return j + m;
        j += m;
      } else {
        j++;
      }
    }
    return -1;
  }

  // Where the emphasis opened at i with a run of n `ch` closes, or -1.
  function closingRun(src, from, ch, n) {
    let j = from;
    while (j < src.length) {
      const c = src[j];
      if (c === "\\") {
        j += 2;
        continue;
      }
      if (c === "`") {
        const end = codeSpanEnd(src, j, runLength(src, j, "`"));
        j = end === -1 ? j + 1 : end;
        continue;
      }
      if (c === ch) {
        const m = runLength(src, j, ch);
        const canClose = !isSpace(src[j - 1]) && (ch !== "_" || !isWordChar(src[j + m]));
        if (m === n && canClose && j > from) return j;
        j += m; // a run of another length: nested emphasis, skip it whole
        continue;
      }
      j++;
    }
    return -1;
  }

  // [text](url): returns {text, url, end} or null.
  function parseLink(src, i) {
    let depth = 0;
    let j = i;
    for (; j < src.length; j++) {
      if (src[j] === "\\") {
        j++;
      } else if (src[j] === "[") {
        depth++;
      } else if (src[j] === "]") {
        depth--;
        if (depth === 0) break;
      }
    }
    if (depth !== 0 || src[j + 1] !== "(") return null;
    // the destination may hold balanced parentheses: (https://x.org/a_(b)) or javascript:f(1)
    let close = j + 2;
    for (let open = 1; close < src.length; close++) {
      if (src[close] === "\\") close++;
      else if (src[close] === "(") open++;
      else if (src[close] === ")" && --open === 0) break;
    }
    if (close >= src.length) return null;
    const target = src.slice(j + 2, close).trim().replace(/^<(.*)>$/, "$1");
    const url = target.split(/\s+/)[0]; // drop a "title"
    return { text: src.slice(i + 1, j), url: url, end: close + 1 };
  }

  function inline(src) {
    const out = [];
    let buf = "";
    const flush = () => {
      if (buf) out.push(document.createTextNode(buf));
      buf = "";
    };
    let i = 0;
    while (i < src.length) {
      const c = src[i];
      if (c === "\\" && src[i + 1] === "\n") {
        flush();
        out.push(document.createElement("br"));
        i += 2;
      } else if (c === "\\" && i + 1 < src.length && PUNCTUATION.includes(src[i + 1])) {
        buf += src[i + 1];
        i += 2;
      } else if (c === " " && src.startsWith("  \n", i)) {
        flush();
        out.push(document.createElement("br"));
        i += 3;
      } else if (c === "`") {
        const n = runLength(src, i, "`");
        const end = codeSpanEnd(src, i, n);
        if (end === -1) {
          buf += src.slice(i, i + n);
          i += n;
        } else {
          flush();
          const code = document.createElement("code");
          let text = src.slice(i + n, end - n).replace(/\n/g, " ");
          if (/^ .*[^ ].* $/.test(text)) text = text.slice(1, -1);
          code.textContent = text;
          out.push(code);
          i = end;
        }
      } else if (c === "*" || c === "_" || c === "~") {
        const run = runLength(src, i, c);
        const n = c === "~" ? 2 : Math.min(run, 3);
        const canOpen =
          (c !== "~" || run === 2) && !isSpace(src[i + run]) && (c !== "_" || !isWordChar(src[i - 1]));
        const close = canOpen ? closingRun(src, i + n, c, n) : -1;
        if (close === -1) {
          buf += src.slice(i, i + run);
          i += run;
        } else {
          flush();
          const inner = inline(src.slice(i + n, close));
          let node;
          if (c === "~") {
            node = document.createElement("del");
            node.append(...inner);
          } else if (n === 1) {
            node = document.createElement("em");
            node.append(...inner);
          } else {
            node = document.createElement("strong");
            if (n === 3) {
              const em = document.createElement("em");
              em.append(...inner);
              node.append(em);
            } else {
              node.append(...inner);
            }
          }
          out.push(node);
          i = close + n;
        }
      } else if (c === "!" && src[i + 1] === "[" && parseLink(src, i + 1)) {
        const parsed = parseLink(src, i + 1);
        buf += parsed.text; // an image: its alt text, nothing fetched
        i = parsed.end;
      } else if (c === "[" && parseLink(src, i)) {
        const parsed = parseLink(src, i);
        flush();
        out.push(link(parsed.url, inline(parsed.text)));
        i = parsed.end;
      } else if (c === "<" && /^<(https?:\/\/[^\s<>]+|mailto:[^\s<>]+)>/i.test(src.slice(i))) {
        const url = /^<([^>]+)>/.exec(src.slice(i))[1];
        flush();
        out.push(link(url, [document.createTextNode(url)]));
        i += url.length + 2;
      } else if (c === "&" && /^&(#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z]+);/.test(src.slice(i))) {
        const ref = /^&([^;]+);/.exec(src.slice(i))[1];
        const decoded = decodeEntity(ref);
        buf += decoded === null ? "&" + ref + ";" : decoded;
        i += ref.length + 2;
      } else {
        buf += c;
        i++;
      }
    }
    flush();
    return out;
  }

  function decodeEntity(ref) {
    if (ref[0] === "#") {
      const code = ref[1] === "x" || ref[1] === "X" ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
      return code > 0 && code <= 0x10ffff && !(code >= 0xd800 && code <= 0xdfff) ? String.fromCodePoint(code) : "\ufffd";
    }
    return Object.prototype.hasOwnProperty.call(NAMED_ENTITIES, ref) ? NAMED_ENTITIES[ref] : null;
  }

  // ---- tables ------------------------------------------------------------------------------------

  // Cells of a pipe-table row: split on unescaped pipes outside code spans (escapes stay for inline()).
  function splitRow(line) {
    let row = line.trim();
    if (row.startsWith("|")) row = row.slice(1);
    if (row.endsWith("|") && !row.endsWith("\\|")) row = row.slice(0, -1);
    const cells = [];
    let cell = "";
    for (let i = 0; i < row.length; i++) {
      const c = row[i];
      if (c === "\\" && i + 1 < row.length) {
        cell += row[i] + row[i + 1];
        i++;
      } else if (c === "`") {
        const n = runLength(row, i, "`");
        const end = codeSpanEnd(row, i, n);
        const stop = end === -1 ? i + n : end;
        cell += row.slice(i, stop);
        i = stop - 1;
      } else if (c === "|") {
        cells.push(cell.trim());
        cell = "";
      } else {
        cell += c;
      }
    }
    cells.push(cell.trim());
    return cells;
  }

  function table(lines) {
    const head = splitRow(lines[0]);
    const aligns = splitRow(lines[1]).map((d) => {
      const left = d.startsWith(":");
      const right = d.endsWith(":");
      return left && right ? "center" : right ? "right" : left ? "left" : "";
    });
    const t = document.createElement("table");
    const thead = t.createTHead().insertRow();
    head.forEach((text, k) => {
      const th = document.createElement("th");
      if (aligns[k]) th.className = "align-" + aligns[k];
      th.append(...inline(text));
      thead.append(th);
    });
    const body = t.createTBody();
    for (const line of lines.slice(2)) {
      const tr = body.insertRow();
      const cells = splitRow(line);
      head.forEach((_, k) => {
        const td = tr.insertCell();
        if (aligns[k]) td.className = "align-" + aligns[k];
        td.append(...inline(cells[k] || ""));
      });
    }
    return t;
  }

  // ---- blocks ------------------------------------------------------------------------------------

  function startsBlock(line, next) {
    return (
      HEADING.test(line) ||
      RULE.test(line) ||
      FENCE.test(line) ||
      QUOTE.test(line) ||
      LIST_ITEM.test(line) ||
      (line.includes("|") && next !== undefined && TABLE_DELIMITER.test(next))
    );
  }

  function list(lines, i) {
    const first = LIST_ITEM.exec(lines[i]);
    const ordered = /\d/.test(first[2]);
    const node = document.createElement(ordered ? "ol" : "ul");
    if (ordered && parseInt(first[2], 10) !== 1) node.start = parseInt(first[2], 10);
    const items = [];
    while (i < lines.length) {
      const m = LIST_ITEM.exec(lines[i]);
      if (m && /\d/.test(m[2]) === ordered && m[1].length <= first[1].length + 1) {
        const width = m[0].length || m[1].length + m[2].length + 1;
        items.push({ width: width, lines: [lines[i].slice(m[0].length)] });
        i++;
      } else if (lines[i].trim() === "") {
        // a blank line ends the list unless the next line carries on an item
        const next = lines[i + 1];
        if (next === undefined || !(LIST_ITEM.test(next) || /^ {2,}\S/.test(next))) break;
        items[items.length - 1].lines.push("");
        i++;
      } else if (/^ {2,}\S/.test(lines[i]) || !startsBlock(lines[i], lines[i + 1])) {
        const item = items[items.length - 1];
        const indent = lines[i].length - lines[i].trimStart().length;
        item.lines.push(lines[i].slice(Math.min(indent, item.width)));
        i++;
      } else {
        break;
      }
    }
    // a tight list (no blank line inside) shows its items' text without paragraphs around it
    const tight = items.every((item) => !item.lines.slice(0, -1).some((line) => line.trim() === ""));
    for (const item of items) {
      const li = document.createElement("li");
      for (const child of Array.from(blocks(item.lines).childNodes)) {
        if (tight && child.nodeName === "P") li.append(...child.childNodes);
        else li.append(child);
      }
      node.append(li);
    }
    return { node: node, next: i };
  }

  function blocks(lines) {
    const out = document.createDocumentFragment();
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      if (line.trim() === "") {
        i++;
        continue;
      }
      let m;
      if ((m = FENCE.exec(line))) {
        const fence = m[1];
        const body = [];
        i++;
        while (i < lines.length && !lines[i].trim().startsWith(fence)) body.push(lines[i++]);
        i++;
        const pre = document.createElement("pre");
        const code = document.createElement("code");
        code.textContent = body.join("\n");
        pre.append(code);
        out.append(pre);
      } else if ((m = HEADING.exec(line))) {
        // a card is a small box: # is the biggest heading inside it, not the page's
        const h = document.createElement("h" + Math.min(6, m[1].length + 3));
        h.append(...inline(m[2] || ""));
        out.append(h);
        i++;
      } else if (RULE.test(line)) {
        out.append(document.createElement("hr"));
        i++;
      } else if (line.includes("|") && i + 1 < lines.length && TABLE_DELIMITER.test(lines[i + 1])) {
        const rows = [line, lines[i + 1]];
        i += 2;
        while (i < lines.length && lines[i].trim() !== "" && lines[i].includes("|")) rows.push(lines[i++]);
        out.append(table(rows));
      } else if (QUOTE.test(line)) {
        const quoted = [];
        while (i < lines.length && QUOTE.test(lines[i])) quoted.push(lines[i++].replace(QUOTE, ""));
        const q = document.createElement("blockquote");
        q.append(blocks(quoted));
        out.append(q);
      } else if (LIST_ITEM.test(line)) {
        const parsed = list(lines, i);
        out.append(parsed.node);
        i = parsed.next;
      } else {
        const para = [line.trimStart()];
        i++;
        while (i < lines.length && lines[i].trim() !== "" && !startsBlock(lines[i], lines[i + 1])) {
          para.push(lines[i++].trimStart());
        }
        const p = document.createElement("p");
        p.append(...inline(para.join("\n").replace(/[ \t]+$/, "")));
        out.append(p);
      }
    }
    return out;
  }

  /** Markdown text → a DocumentFragment of safe elements (never parsed as HTML). */
  function render(markdown) {
    return blocks(String(markdown == null ? "" : markdown).replace(/\r\n?/g, "\n").split("\n"));
  }

  global.vcfMarkdown = { render: render, safeUrl: safeUrl };
})(window);
