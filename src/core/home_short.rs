//! Short codes through a home node (docs/PROTOCOL.md, section 6.5). A client never
//! listens, so the PAKE of its short code runs on its home node: the client asks the node
//! for a code (`home_short_code`), the node picks a free number and words, keeps the code
//! for its owner and answers with it (`home_short_code_made`). Whoever says the code to the
//! node is paired with the owner the way a carried invitation is, and the owner gets the
//! pairing in `home_paired`.

use crate::core::api::{CommandError, NewInvite};
use crate::core::home::own_endpoints;
use crate::core::{Answer, CodeReach, CommandId, ConnId, NodeCore, Rng, Role};
use crate::domain::short_code::{ShortCode, MAX_CODE_TTL_SECS};
use crate::domain::{InviteRecord, InviteStatus};
use crate::net::pairing;
use crate::net::wire::WireMsg;

/// How long a client waits for its home node to answer `home_short_code`.
pub(super) const SHORT_ASK_TIMEOUT_MS: u64 = 10_000;

impl NodeCore {
    /// `short_code` on a client: ask our home node for one; the answer comes with its reply
    /// ([`Self::on_short_code_made`]), or an error now if there is no node to ask.
    pub(super) fn ask_home_short_code(&mut self, id: CommandId, ttl_secs: u64) {
        let result = match self.home_contact() {
            Err(e) => Err(e),
            Ok(None) => Err(CommandError::NoHomeNode),
            Ok(Some(_)) => match self.home_link() {
                None => Err(CommandError::HomeNodeOffline),
                Some(conn) => {
                    let ttl_secs = ttl_secs.clamp(1, MAX_CODE_TTL_SECS);
                    self.send(conn, WireMsg::HomeShortCode { ttl_secs });
                    let deadline = self.now + SHORT_ASK_TIMEOUT_MS;
                    self.short_asks.push_back((id, deadline));
                    return;
                }
            },
        };
        self.reply(id, result);
    }

    /// Our home node answered the oldest `home_short_code`: keep the code (so `invites`
    /// lists it and `revoke_invite` reaches the node) and answer the command.
    pub(super) fn on_short_code_made(
        &mut self,
        code: Option<String>,
        expires_at: u64,
        refused: Option<String>,
    ) -> Result<(), String> {
        let Some((id, _)) = self.short_asks.pop_front() else {
            return Err("a short code nobody asked for".into());
        };
        let result = match code {
            Some(code) => self.keep_home_short_code(code, expires_at),
            None => Err(CommandError::HomeRefused(refused.unwrap_or_default())),
        };
        self.reply(id, result);
        Ok(())
    }

    fn keep_home_short_code(
        &mut self,
        code: String,
        expires_at: u64,
    ) -> Result<Answer, CommandError> {
        let parsed = ShortCode::parse(&code)?;
        let rec = InviteRecord {
            token: pairing::short_code_key(parsed.slot),
            code: parsed.reveal(),
            created_at: self.now_secs(),
            expires_at,
            status: InviteStatus::Open,
            attempts: 0,
            owner: None,
            relayed: false,
        };
        self.store.put_invite(&rec)?;
        tracing::info!(
            slot = parsed.slot,
            expires_at,
            "short code made by our home node"
        );
        let urls: Vec<String> = match self.home_contact()? {
            Some(home) => own_endpoints(&home).iter().map(|e| e.url.clone()).collect(),
            None => Vec::new(),
        };
        Ok(Answer::NewInvite(NewInvite {
            code: rec.code,
            expires_at,
            reach: CodeReach::of(&urls),
            url: urls.first().cloned(),
        }))
    }

    /// Waiting `short_code` commands fail when their time is up or the link to our home
    /// node is gone (it would never answer them).
    pub(super) fn expire_short_asks(&mut self) {
        // Runs on every timeout: no store read unless something waits.
        if self.short_asks.is_empty() {
            return;
        }
        let gone = self.cfg.role == Role::Client && self.home_link().is_none();
        while let Some(&(id, deadline)) = self.short_asks.front() {
            let error = if gone {
                CommandError::HomeNodeOffline
            } else if self.now >= deadline {
                CommandError::Conn(crate::net::link::ConnError::Timeout)
            } else {
                break;
            };
            self.short_asks.pop_front();
            self.reply(id, Err(error));
        }
    }

    /// A home node: our owner `owner` asks for a short code; make one for it, or say why
    /// not.
    pub(super) fn owner_short_code(
        &mut self,
        conn: ConnId,
        owner: &str,
        ttl_secs: u64,
        rng: &mut dyn Rng,
    ) {
        let answer = match self.short_code_record(Some(owner), ttl_secs, rng) {
            Ok(rec) => WireMsg::HomeShortCodeMade {
                code: Some(rec.code),
                expires_at: rec.expires_at,
                refused: None,
            },
            Err(e) => WireMsg::HomeShortCodeMade {
                code: None,
                expires_at: 0,
                refused: Some(e.to_string()),
            },
        };
        self.send(conn, answer);
    }
}
