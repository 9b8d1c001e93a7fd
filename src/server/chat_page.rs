//! `GET /chat/{room}/`: the small chat page of the seed reports, so a person can open real browser
//! tabs on a room as the django-channels-leak report did. The page joins `/ws/chat/{room}` on the
//! server it came from, shows every frame that arrives and sends what is typed. It is one inline
//! document: nothing is fetched but the WebSocket.

use warp::Filter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use crate::naming::is_valid_name;

/// The page, with `{ROOM}` where the (valid, so HTML-safe) room name goes.
const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>leakrun chat: {ROOM}</title><link rel="icon" href="data:,">
<style>
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 720px; color: #222; }
#log { list-style: none; padding: 0; border: 1px solid #ddd; min-height: 200px; max-height: 60vh; overflow-y: auto; font-family: ui-monospace, monospace; font-size: 0.9em; }
#log li { padding: 2px 8px; border-bottom: 1px solid #f0f0f0; }
#status { color: #666; font-size: 0.9em; }
form { display: flex; gap: 8px; } #text { flex: 1; padding: 4px; }
</style></head>
<body data-room="{ROOM}">
<h1>Room <code>{ROOM}</code></h1>
<p id="status">connecting…</p>
<ul id="log"></ul>
<form id="send"><input id="text" autocomplete="off" placeholder="a message for the room"><button>Send</button></form>
<script>
"use strict";
const room = document.body.dataset.room;
const log = document.getElementById("log");
const status = document.getElementById("status");
const text = document.getElementById("text");
const scheme = location.protocol === "https:" ? "wss://" : "ws://";
const socket = new WebSocket(scheme + location.host + "/ws/chat/" + encodeURIComponent(room));
let received = 0;
socket.onopen = () => { status.textContent = "joined " + room; document.body.dataset.state = "open"; };
socket.onclose = () => { status.textContent = "disconnected"; document.body.dataset.state = "closed"; };
socket.onmessage = (event) => {
  const item = document.createElement("li");
  item.className = "message";
  item.textContent = typeof event.data === "string" ? event.data : "(binary frame)";
  log.appendChild(item);
  while (log.children.length > 500) log.removeChild(log.firstChild);
  log.scrollTop = log.scrollHeight;
  received += 1;
  document.body.dataset.received = String(received);
};
document.getElementById("send").addEventListener("submit", (event) => {
  event.preventDefault();
  if (text.value && socket.readyState === WebSocket.OPEN) { socket.send(text.value); text.value = ""; }
});
</script>
</body></html>
"#;

/// `GET /chat/{room}/` (and without the final slash).
pub fn route() -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path("chat")
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::get())
        .map(|room: String| page(&room))
}

/// The page for `room`, or 400 naming what a room may be.
pub fn page(room: &str) -> Response {
    if !is_valid_name(room) {
        let body = format!("invalid room name `{room}`: use 1 to 99 letters, digits, `.`, `_` or `-`\n");
        return warp::reply::with_status(body, StatusCode::BAD_REQUEST).into_response();
    }
    warp::reply::html(PAGE.replace("{ROOM}", room)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_joins_its_room_and_a_bad_room_is_refused() {
        let ok = page("lobby");
        assert_eq!(ok.status(), StatusCode::OK);
        let body = PAGE.replace("{ROOM}", "lobby");
        assert!(body.contains("data-room=\"lobby\"") && body.contains("\"/ws/chat/\""));
        assert_eq!(page("a<b").status(), StatusCode::BAD_REQUEST);
        assert_eq!(page("").status(), StatusCode::BAD_REQUEST);
    }
}
