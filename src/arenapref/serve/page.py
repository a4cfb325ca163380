"""The page at `/`: paste a prompt and two answers, see P(A wins), P(B wins), P(tie).

Everything is inline (no CDN, no build step). A link such as `/?prompt=...&a=...&b=...&submit=1` fills the
form and scores it on load, which is how the browser test drives it.
"""

PAGE_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
            "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

PAGE_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>arenapref judge</title>
<style>
  :root { font-family: system-ui, sans-serif; color: #1d2433; background: #f6f7f9; }
  body { max-width: 980px; margin: 1.5rem auto; padding: 0 1rem; }
  h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
  p.lead { margin: 0 0 1rem; color: #556; }
  label { display: block; font-weight: 600; margin: .6rem 0 .2rem; }
  textarea { width: 100%; box-sizing: border-box; min-height: 5rem; font: inherit; padding: .4rem; border: 1px solid #c5cad3; border-radius: 4px; }
  .answers { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
  .answers textarea { min-height: 10rem; }
  .row { display: flex; gap: 1rem; align-items: center; margin-top: .8rem; flex-wrap: wrap; }
  .row label { display: inline; font-weight: normal; margin: 0; }
  input[type=password] { font: inherit; padding: .3rem; border: 1px solid #c5cad3; border-radius: 4px; }
  button { font: inherit; padding: .45rem 1.2rem; border: 0; border-radius: 4px; background: #2f5bd3; color: #fff; cursor: pointer; }
  button:disabled { background: #8a9bc9; cursor: wait; }
  #result { margin-top: 1.2rem; background: #fff; border: 1px solid #dde1e8; border-radius: 6px; padding: .8rem 1rem; }
  .prob { display: grid; grid-template-columns: 8rem 1fr 4.5rem; gap: .6rem; align-items: center; margin: .35rem 0; }
  .bar { height: .9rem; background: #e7eaf0; border-radius: 3px; overflow: hidden; }
  .bar span { display: block; height: 100%; width: 0; background: #2f5bd3; transition: width .2s; }
  .value { font-variant-numeric: tabular-nums; text-align: right; }
  .winner { font-weight: 700; }
  #status { color: #556; min-height: 1.2rem; margin-top: .4rem; }
  #status.error { color: #b3261e; }
  @media (max-width: 700px) { .answers { grid-template-columns: 1fr; } }
</style>
</head>
<body>
<h1>arenapref judge</h1>
<p class="lead">Which answer will people prefer? Paste a prompt and two answers.</p>
<form id="judge">
  <label for="prompt">Prompt</label>
  <textarea id="prompt" name="prompt" required></textarea>
  <div class="answers">
    <div><label for="response_a">Answer A</label><textarea id="response_a" name="response_a"></textarea></div>
    <div><label for="response_b">Answer B</label><textarea id="response_b" name="response_b"></textarea></div>
  </div>
  <div class="row">
    <button id="go" type="submit">Judge</button>
    <label><input id="swap" type="checkbox" checked> score both orders (A/B swap)</label>
    <label>token <input id="token" type="password" autocomplete="off" placeholder="only if the server needs one"></label>
  </div>
</form>
<div id="status" role="status"></div>
<div id="result" data-state="empty" hidden>
  <div class="prob" id="row-a"><span>A wins</span><div class="bar"><span id="bar-a"></span></div><span class="value" id="p-a"></span></div>
  <div class="prob" id="row-b"><span>B wins</span><div class="bar"><span id="bar-b"></span></div><span class="value" id="p-b"></span></div>
  <div class="prob" id="row-tie"><span>Tie</span><div class="bar"><span id="bar-tie"></span></div><span class="value" id="p-tie"></span></div>
</div>
<script>
(function () {
  const $ = (id) => document.getElementById(id);
  const keys = [["a", "winner_model_a"], ["b", "winner_model_b"], ["tie", "winner_tie"]];

  function show(r) {
    const best = keys.reduce((m, k) => (r[k[1]] > r[m[1]] ? k : m), keys[0])[0];
    for (const [short, label] of keys) {
      $("p-" + short).textContent = r[label].toFixed(3);
      $("bar-" + short).style.width = (100 * r[label]).toFixed(1) + "%";
      $("row-" + short).classList.toggle("winner", short === best);
    }
    $("result").hidden = false;
    $("result").dataset.state = "done";
  }

  async function judge(event) {
    if (event) event.preventDefault();
    const status = $("status");
    status.className = "";
    status.textContent = "scoring...";
    $("go").disabled = true;
    const headers = {"Content-Type": "application/json"};
    if ($("token").value) headers["Authorization"] = "Bearer " + $("token").value;
    const started = performance.now();
    try {
      const res = await fetch("v1/judge", {method: "POST", headers, body: JSON.stringify({
        prompt: $("prompt").value, response_a: $("response_a").value, response_b: $("response_b").value,
        swap: $("swap").checked})});
      const body = await res.json();
      if (!res.ok) throw new Error((body.error && body.error.message) || ("HTTP " + res.status));
      show(body.results[0]);
      status.textContent = "scored by " + body.model + " in " + Math.round(performance.now() - started) + " ms";
    } catch (err) {
      status.className = "error";
      status.textContent = "error: " + err.message;
      $("result").dataset.state = "error";
    } finally {
      $("go").disabled = false;
    }
  }

  $("judge").addEventListener("submit", judge);
  const q = new URLSearchParams(location.search);
  for (const [param, id] of [["prompt", "prompt"], ["a", "response_a"], ["b", "response_b"]]) {
    if (q.has(param)) $(id).value = q.get(param);
  }
  if (q.get("swap") === "0") $("swap").checked = false;
  if (q.get("submit") === "1") judge();
})();
</script>
</body>
</html>
"""
