// Markdown as DOM nodes: paragraphs, headings, lists, block quotes, fenced code (with a
// small highlighter), tables, and inline code, emphasis and links. Every piece of text goes
// in as a text node and links keep only http(s), mailto and same-site addresses: what a
// model writes cannot become markup or script, whatever it holds.

const SAFE_LINK = /^(https?:|mailto:|\/(?!\/)|#)/i;

export function renderMarkdown(source, options = {}) {
  const root = document.createDocumentFragment();
  const lines = String(source).replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = line.match(/^\s*(```|~~~)\s*([\w+-]*)\s*$/);
    if (fence) {
      const body = [];
      i += 1;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
      i += 1;
      root.append(codeBlock(body.join("\n"), fence[2]));
      continue;
    }
    if (!line.trim()) { i += 1; continue; }
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    if (heading) {
      const node = el(`h${Math.min(heading[1].length + 2, 6)}`);
      inline(node, heading[2], options);
      root.append(node);
      i += 1;
      continue;
    }
    if (/^\s*\|.*\|\s*$/.test(line) && i + 1 < lines.length && /^\s*\|?\s*:?-{2,}/.test(lines[i + 1])) {
      const rows = [];
      while (i < lines.length && /^\s*\|.*\|\s*$/.test(lines[i])) rows.push(lines[i++]);
      root.append(table(rows, options));
      continue;
    }
    const item = line.match(/^\s*([-*+]|\d+[.)])\s+(.*)$/);
    if (item) {
      const list = el(/\d/.test(item[1]) ? "ol" : "ul");
      while (i < lines.length) {
        const next = lines[i].match(/^\s*([-*+]|\d+[.)])\s+(.*)$/);
        if (!next) break;
        const li = el("li");
        inline(li, next[2], options);
        list.append(li);
        i += 1;
      }
      root.append(list);
      continue;
    }
    if (line.startsWith(">")) {
      const quoted = [];
      while (i < lines.length && lines[i].startsWith(">")) quoted.push(lines[i++].replace(/^>\s?/, ""));
      const node = el("blockquote");
      node.append(renderMarkdown(quoted.join("\n"), options));
      root.append(node);
      continue;
    }
    const paragraph = [];
    while (i < lines.length && lines[i].trim() && !/^(#{1,6}\s|\s*```|\s*~~~|>)/.test(lines[i])) {
      paragraph.push(lines[i++]);
    }
    const node = el("p");
    inline(node, paragraph.join("\n"), options);
    root.append(node);
  }
  return root;
}

function el(tag, text) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  return node;
}

const INLINE = /(`+)([\s\S]*?)\1|\*\*([^*]+)\*\*|__([^_]+)__|\*([^*\s][^*]*)\*|\[([^\]]*)\]\(([^()\s]*)\)|【[^】\n]{1,300}】/g;

// Text with inline code, bold, italics and links; ``options.link(href, text)`` may turn a
// link into another node (a download of a file the code produced, say).
export function inline(parent, text, options = {}) {
  let last = 0;
  for (const match of text.matchAll(INLINE)) {
    if (match.index > last) parent.append(document.createTextNode(text.slice(last, match.index)));
    last = match.index + match[0].length;
    if (match[1]) parent.append(el("code", match[2]));
    else if (match[3] || match[4]) parent.append(el("strong", match[3] || match[4]));
    else if (match[5]) parent.append(el("em", match[5]));
    else if (match[6] !== undefined) parent.append(link(match[7], match[6], options));
    else {
      const cited = el("span", match[0]);
      cited.className = "citation";
      parent.append(cited);
    }
  }
  if (last < text.length) parent.append(document.createTextNode(text.slice(last)));
}

function link(href, text, options) {
  const custom = options.link && options.link(href, text);
  if (custom) return custom;
  if (!SAFE_LINK.test(href)) return el("span", text || href);
  const a = el("a", text || href);
  a.href = href;
  a.rel = "noopener noreferrer";
  a.target = "_blank";
  return a;
}

function table(rows, options) {
  const cells = (row) => row.trim().replace(/^\||\|$/g, "").split("|").map((c) => c.trim());
  const node = el("table");
  const head = el("thead");
  const tr = el("tr");
  for (const cell of cells(rows[0])) { const th = el("th"); inline(th, cell, options); tr.append(th); }
  head.append(tr);
  node.append(head);
  const body = el("tbody");
  for (const row of rows.slice(2)) {
    const line = el("tr");
    for (const cell of cells(row)) { const td = el("td"); inline(td, cell, options); line.append(td); }
    body.append(line);
  }
  node.append(body);
  return node;
}

const PYTHON = /(#[^\n]*)|("""[\s\S]*?"""|'''[\s\S]*?'''|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')|\b(and|as|assert|async|await|break|class|continue|def|del|elif|else|except|False|finally|for|from|global|if|import|in|is|lambda|None|nonlocal|not|or|pass|raise|return|True|try|while|with|yield)\b|\b(\d+(?:\.\d+)?)\b/g;

export function codeBlock(code, language = "python") {
  const pre = el("pre");
  const node = el("code");
  if (!language || /^(py|python|python3)$/i.test(language)) highlight(node, code);
  else node.textContent = code;
  pre.append(node);
  return pre;
}

export function highlight(node, code) {
  let last = 0;
  for (const match of code.matchAll(PYTHON)) {
    if (match.index > last) node.append(document.createTextNode(code.slice(last, match.index)));
    last = match.index + match[0].length;
    const kind = match[1] ? "comment" : match[2] ? "string" : match[3] ? "keyword" : "number";
    const span = el("span", match[0]);
    span.className = `tok-${kind}`;
    node.append(span);
  }
  if (last < code.length) node.append(document.createTextNode(code.slice(last)));
}
