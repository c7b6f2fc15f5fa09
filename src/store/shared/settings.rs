//! Server settings (the pagination key, generated credentials): the first value stored for a
//! name is the one every node reads.

use std::future::Future;

use super::{Backend, Session, backend};
use crate::store::{SettingStore, StoreResult};

/// The steps of the settings' logic that each backend writes in its own SQL.
pub trait SettingRows: Session {
    /// Stores the setting unless the name has one already.
    fn insert_setting(
        &mut self,
        name: &str,
        value: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The stored value, if any.
    fn setting(
        &mut self,
        name: &str,
    ) -> impl Future<Output = Result<Option<String>, Self::Error>> + Send;
}

async fn setting_or_insert<S: SettingRows>(
    session: &mut S,
    name: &str,
    value: &str,
) -> Result<String, S::Error> {
    session.insert_setting(name, value).await?;
    Ok(session
        .setting(name)
        .await?
        .ok_or_else(|| backend(format!("the setting {name} was not stored")))?)
}

#[async_trait::async_trait]
impl<B> SettingStore for B
where
    B: Backend,
    B::Session: SettingRows,
{
    async fn setting_or_insert(&self, name: &str, value: &str) -> StoreResult<String> {
        self.write(
            (name.to_owned(), value.to_owned()),
            |session, (name, value)| Box::pin(setting_or_insert(session, name, value)),
        )
        .await
    }
}
