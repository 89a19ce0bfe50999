// Live pages: the server sends a `change` event when the store changes;
// the page then fetches itself again and swaps its <main>, keeping the
// scroll position. One connection, no polling from here.
(function () {
  if (!window.EventSource) return;
  const events = new EventSource("/events");
  let busy = false;
  events.addEventListener("change", async function () {
    if (busy) return;
    busy = true;
    try {
      const response = await fetch(window.location.href, { headers: { "Accept": "text/html" } });
      if (response.ok) {
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.getElementById("main");
        const main = document.getElementById("main");
        const focused = document.activeElement && document.activeElement.name;
        if (fresh && main && !focused) main.replaceWith(fresh);
      }
    } finally {
      busy = false;
    }
  });
})();
