//! A socket's token with `--auth token`: refreshed in band with `auth:refresh {token}`
//! (acknowledged `{"status":"ok","expires"}` or `{"error"}`); when it expires past the grace
//! period or is revoked, the socket gets `auth:expired` / `auth:revoked` `{"reason"}` and is
//! disconnected (a Socket.IO v5 disconnect carries no reason, hence the event first).

use std::sync::Arc;

use serde_json::{json, Value};
use socketioxide::extract::{AckSender, SocketRef, TryData};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::auth::lifetime::{CredentialEnd, Heard};
use crate::auth::token::Identity;
use crate::auth::Auth;

/// The client → server event that refreshes a socket's token.
pub const REFRESH: &str = "auth:refresh";

/// What a socket's extensions hold to reach its credential's task.
#[derive(Clone)]
struct Session {
    refreshes: mpsc::Sender<Identity>,
    /// Cancelled when the socket disconnects: the task ends.
    gone: CancellationToken,
    uid: Arc<str>,
}

/// Watches `identity`'s token for `socket` (a task until the socket disconnects) and handles
/// its `auth:refresh` events.
pub(super) fn watch(socket: &SocketRef, auth: &Arc<Auth>, identity: &Identity) {
    let mut credential = auth.credential(identity);
    let (refreshes, mut refreshed) = mpsc::channel::<Identity>(4);
    let gone = CancellationToken::new();
    socket.extensions.insert(Session {
        refreshes,
        gone: gone.clone(),
        uid: Arc::from(identity.uid.as_str()),
    });
    let auth = auth.clone();
    socket.on(
        REFRESH,
        move |socket: SocketRef, TryData(data): TryData<Value>, ack: AckSender| {
            let answer = refresh(&socket, &auth, data.ok());
            let _ = ack.send(&answer);
            std::future::ready(())
        },
    );
    let socket = socket.clone();
    tokio::spawn(async move {
        let end = loop {
            tokio::select! {
                () = gone.cancelled() => return,
                heard = credential.next() => match heard {
                    Heard::Ended(end) => break end,
                    Heard::Narrowed(room) => super::member::narrowed(&socket, &credential, room),
                },
                Some(identity) = refreshed.recv() => {
                    // Checked by `refresh`: the same user.
                    let _ = credential.refresh(&identity);
                }
            }
        };
        let (_, reason) = end.close();
        let event = match end {
            CredentialEnd::Expired => "auth:expired",
            CredentialEnd::Revoked => "auth:revoked",
            CredentialEnd::Banned => "auth:banned",
            CredentialEnd::Kicked => "auth:kicked",
        };
        let _ = socket.emit(event, &json!({ "reason": reason }));
        let _ = socket.disconnect();
    });
}

/// The socket disconnected: its credential's task ends.
pub(super) fn forget(socket: &SocketRef) {
    if let Some(session) = socket.extensions.get::<Session>() {
        session.gone.cancel();
    }
}

fn refresh(socket: &SocketRef, auth: &Auth, data: Option<Value>) -> Value {
    let Some(session) = socket.extensions.get::<Session>() else {
        return json!({"error": "this socket has no token to refresh"});
    };
    let token = data
        .as_ref()
        .and_then(|d| d.get("token"))
        .and_then(Value::as_str);
    let Some(token) = token else {
        return json!({"error": "auth:refresh needs {\"token\": \"...\"}"});
    };
    match auth.identify(Some(token)) {
        Ok(Some(identity)) if *identity.uid == *session.uid => {
            let expires = identity.expires;
            match session.refreshes.try_send(identity) {
                Ok(()) => json!({"status": "ok", "expires": expires}),
                Err(_) => json!({"error": "too many refreshes at once; try again"}),
            }
        }
        Ok(Some(identity)) => json!({
            "error": format!("a refresh must carry a token of the same user ({:?}), not of {:?}", session.uid, identity.uid)
        }),
        Ok(None) => json!({"error": "the server runs with --auth off"}),
        Err(e) => json!({"error": e.to_string(), "code": e.code()}),
    }
}
