//! A fake Telegram Bot API on loopback: `POST /bot<TOKEN>/<Method>` with a JSON body,
//! method names matched case-insensitively (teloxide sends `GetMe`, `GetUpdates`, ...),
//! one request per connection (`Connection: close`).

use std::collections::VecDeque;
use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};

/// A message the bot sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Sent {
    pub chat_id: i64,
    pub text: String,
}

#[derive(Default)]
struct State {
    /// Updates not yet confirmed (Telegram semantics: returned until an offset passes them).
    queue: VecDeque<Value>,
    next_id: i64,
    sent: Vec<Sent>,
    methods: Vec<String>,
    /// Request paths (they hold the token; tests only check them, never print them).
    paths: Vec<String>,
}

/// The fake server.
pub struct FakeBot {
    pub url: String,
    state: Arc<Mutex<State>>,
    /// Updates returned per getUpdates at most.
    pub batch: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl FakeBot {
    /// Starts on an ephemeral loopback port.
    pub fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}/", l.local_addr().unwrap().port());
        l.set_nonblocking(true).unwrap();
        let state = Arc::new(Mutex::new(State { next_id: 1, ..State::default() }));
        let stop = Arc::new(AtomicBool::new(false));
        let batch = Arc::new(AtomicI64::new(100));
        let (st, sp, ba) = (state.clone(), stop.clone(), batch.clone());
        let accept = std::thread::spawn(move || {
            while !sp.load(Ordering::Acquire) {
                match l.accept() {
                    Ok((s, _)) => {
                        let (st, sp, ba) = (st.clone(), sp.clone(), ba.clone());
                        std::thread::spawn(move || serve(s, &st, &sp, &ba));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        Self { url, state, batch, stop, accept: Some(accept) }
    }

    /// Queues a text message from `chat` (a private chat: the user id is the chat id).
    pub fn push_text(&self, chat: i64, text: &str) -> i64 {
        let mut s = self.state.lock().unwrap();
        let id = s.next_id;
        s.next_id += 1;
        let mut msg = json!({
            "message_id": id,
            "date": 1_700_000_000,
            "chat": {"id": chat, "type": "private", "first_name": "op"},
            "from": {"id": chat, "is_bot": false, "first_name": "op"},
            "text": text,
        });
        if text.starts_with('/') {
            let len = text.split_whitespace().next().map_or(0, str::len);
            msg["entities"] = json!([{"type": "bot_command", "offset": 0, "length": len}]);
        }
        s.queue.push_back(json!({"update_id": id, "message": msg}));
        id
    }

    /// Updates not yet confirmed by the bot.
    pub fn pending(&self) -> usize {
        self.state.lock().unwrap().queue.len()
    }

    /// Messages the bot sent.
    pub fn sent(&self) -> Vec<Sent> {
        self.state.lock().unwrap().sent.clone()
    }

    /// Method names called, lower case.
    pub fn methods(&self) -> Vec<String> {
        self.state.lock().unwrap().methods.clone()
    }

    /// Whether every request path carried `/bot<token>/`.
    pub fn all_paths_carry(&self, token: &str) -> bool {
        let s = self.state.lock().unwrap();
        !s.paths.is_empty() && s.paths.iter().all(|p| p.starts_with(&format!("/bot{token}/")))
    }
}

impl Drop for FakeBot {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}

fn me() -> Value {
    // teloxide-core 0.13 wants the full object, including the newer flags.
    json!({
        "id": 4242, "is_bot": true, "first_name": "kimp", "username": "kimp_bot",
        "can_join_groups": false, "can_read_all_group_messages": false,
        "supports_inline_queries": false, "can_connect_to_business": false,
        "has_main_web_app": false
    })
}

fn serve(mut s: std::net::TcpStream, st: &Mutex<State>, stop: &AtomicBool, batch: &AtomicI64) {
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let Some((_, path, body)) = super::read_request(&mut s, stop) else { return };
    let method = path.rsplit('/').next().unwrap_or("").to_ascii_lowercase();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let result = {
        let mut g = st.lock().unwrap();
        g.methods.push(method.clone());
        g.paths.push(path.clone());
        match method.as_str() {
            "getme" => me(),
            "getupdates" => {
                let offset = body.get("offset").and_then(Value::as_i64).unwrap_or(0);
                g.queue.retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
                let n = batch.load(Ordering::Relaxed) as usize;
                let out: Vec<Value> = g.queue.iter().take(n).cloned().collect();
                if out.is_empty() {
                    drop(g);
                    // A short long-poll, so an idle bot does not spin.
                    std::thread::sleep(Duration::from_millis(20));
                }
                Value::Array(out)
            }
            "sendmessage" => {
                let chat_id = body["chat_id"].as_i64().unwrap_or(0);
                let text = body["text"].as_str().unwrap_or("").to_string();
                g.sent.push(Sent { chat_id, text: text.clone() });
                let id = g.sent.len();
                json!({
                    "message_id": id, "date": 1_700_000_000,
                    "chat": {"id": chat_id, "type": "private", "first_name": "op"},
                    "from": me(), "text": text
                })
            }
            _ => Value::Bool(true),
        }
    };
    let payload = json!({"ok": true, "result": result}).to_string();
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    );
    let _ = s.write_all(resp.as_bytes());
}
