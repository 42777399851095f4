// igimages report: filters, and finding a post by id across pages.
// Every text shown comes from the page's own escaped HTML or is set with
// textContent: nothing from the posts file is ever parsed as HTML here.
(function () {
  "use strict";

  const data = JSON.parse(document.getElementById("report-data").textContent);
  const posts = Array.from(document.querySelectorAll("article.post"));
  const state = { status: "all", reason: "all" };
  const statusButtons = Array.from(document.querySelectorAll("button[data-status]"));
  const reasonSelect = document.getElementById("reason");
  const shown = document.getElementById("shown");
  const findForm = document.getElementById("find");
  const findInput = document.getElementById("find-id");
  const findMessage = document.getElementById("find-message");

  function pageName(number) {
    return number === 1 ? "index.html" : "page-" + number + ".html";
  }

  // FNV-1a over UTF-16 code units: the same bucket igimages.report.build gives an id.
  function bucketOf(id, buckets) {
    let hash = 0x811c9dc5;
    for (let i = 0; i < id.length; i++) {
      hash ^= id.charCodeAt(i);
      hash = Math.imul(hash, 0x01000193) >>> 0;
    }
    return hash % buckets;
  }

  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    return {
      status: params.get("status") || "all",
      reason: params.get("reason") || "all",
      find: params.get("find"),
    };
  }

  function filterHash() {
    const params = new URLSearchParams();
    if (state.status !== "all") params.set("status", state.status);
    if (state.reason !== "all") params.set("reason", state.reason);
    const text = params.toString();
    return text ? "#" + text : "";
  }

  function apply() {
    let count = 0;
    for (const post of posts) {
      const statuses = post.dataset.statuses.split(" ");
      const reasons = post.dataset.reasons.split(" ");
      const visible =
        (state.status === "all" || statuses.includes(state.status)) &&
        (state.reason === "all" || reasons.includes(state.reason));
      post.hidden = !visible;
      if (visible) count++;
      for (const tile of post.querySelectorAll("li.tile")) {
        const match =
          (state.status === "all" || tile.dataset.status === state.status) &&
          (state.reason === "all" || tile.dataset.reason === state.reason);
        tile.classList.toggle("dim", !match);
      }
    }
    for (const button of statusButtons) {
      button.setAttribute("aria-pressed", String(button.dataset.status === state.status));
    }
    if (reasonSelect) reasonSelect.value = state.reason;
    shown.textContent = count + " of " + posts.length + " posts on this page";
    const hash = filterHash();
    for (const link of document.querySelectorAll("a[data-page]")) {
      link.hash = hash;
    }
    try {
      history.replaceState(null, "", hash || location.pathname);
    } catch (error) {
      // Some browsers refuse to rewrite file:// URLs; the filter still applies.
    }
  }

  function setFilter(status, reason) {
    state.status = status;
    state.reason = reason;
    apply();
  }

  function say(text) {
    findMessage.textContent = text;
  }

  function showPost(post) {
    setFilter("all", "all");
    for (const other of posts) other.classList.remove("found");
    post.classList.add("found");
    post.scrollIntoView({ block: "start" });
    say("");
  }

  function postById(id) {
    return posts.find((post) => post.dataset.id === id);
  }

  // Each find/<bucket>.js file calls this with its [id, page] pairs.
  window.igimagesFindIndex = function (bucket, entries) {
    const id = findInput.value.trim();
    if (bucketOf(id, data.buckets) !== bucket) return;
    const entry = entries.find((pair) => pair[0] === id);
    if (!entry) {
      say("no post with this id");
    } else if (entry[1] === data.page) {
      const post = postById(id);
      if (post) showPost(post);
    } else {
      location.href = pageName(entry[1]) + "#find=" + encodeURIComponent(id);
    }
  };

  function find(id) {
    if (!id) return;
    const post = postById(id);
    if (post) {
      showPost(post);
      return;
    }
    if (!data.buckets) {
      say("no post with this id");
      return;
    }
    say("looking…");
    const script = document.createElement("script");
    script.src = "find/" + bucketOf(id, data.buckets) + ".js";
    script.addEventListener("error", () => say("the search index is missing"));
    script.addEventListener("load", () => script.remove());
    document.head.appendChild(script);
  }

  for (const button of statusButtons) {
    button.addEventListener("click", () => {
      const status = button.dataset.status;
      setFilter(status, status === "failed" ? state.reason : "all");
    });
  }
  if (reasonSelect) {
    reasonSelect.addEventListener("change", () => {
      const reason = reasonSelect.value;
      setFilter(reason === "all" ? state.status : "failed", reason);
    });
  }
  findForm.addEventListener("submit", (event) => {
    event.preventDefault();
    find(findInput.value.trim());
  });

  // A link to a post of this same page ("also in N posts") changes the hash only.
  window.addEventListener("hashchange", () => {
    const id = readHash().find;
    if (id) {
      findInput.value = id;
      find(id);
    }
  });

  const initial = readHash();
  state.status = initial.status;
  state.reason = initial.reason;
  apply();
  if (initial.find) {
    findInput.value = initial.find;
    const post = postById(initial.find);
    if (post) showPost(post);
    else say("no post with this id on this page");
  }
})();
