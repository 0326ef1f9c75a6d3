//! Holding a call that waits for approval open for a while (`state.approval_hold`), for
//! clients without tasks: an approval given within the hold answers the call itself.

use std::time::Duration;

use crate::gate::Gateway;
use crate::state::ApprovalStatus;

const POLL: Duration = Duration::from_millis(200);

/// Waits up to `hold` for approval `id` to be decided: `true` when it was (approved or
/// denied), `false` when it is still pending (or `hold` is zero).
pub async fn until_decided(gateway: &Gateway, id: &str, hold: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + hold;
    while tokio::time::Instant::now() + POLL <= deadline {
        tokio::time::sleep(POLL).await;
        match gateway.state.approval(id.to_string()).await {
            Ok(Some(a)) if a.status != ApprovalStatus::Pending => return true,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return false,
        }
    }
    false
}
