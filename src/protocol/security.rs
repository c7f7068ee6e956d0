//! The cluster's users (SCRAM credentials) and ACLs: AlterUsers,
//! ListUsers, AlterAcls, ListAcls. Names are strings here; the broker
//! reads them into `auth`'s types and refuses what does not parse.

use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, WIPOffset};

use super::codec::{opt_str, string, strings_in, strings_out};
use super::create_topics::TopicResult;
use super::envelope::api;
use super::{fb, ErrorCode};

/// A SCRAM credential, derived on the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub user: String,
    pub mechanism: String,
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AlterUsers {
    pub upserts: Vec<Credential>,
    pub deletions: Vec<String>,
}

/// One result per upsert, then one per deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterUsersResponse {
    pub results: Vec<TopicResult>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListUsers;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListUsersResponse {
    pub error: ErrorCode,
    pub error_message: Option<String>,
    /// Each user with its mechanisms.
    pub users: Vec<(String, Vec<String>)>,
}

/// An ACL entry, as strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclEntry {
    pub principal: String,
    pub operation: String,
    pub resource: String,
    pub name: String,
    pub pattern: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AlterAcls {
    pub additions: Vec<AclEntry>,
    pub removals: Vec<AclEntry>,
}

/// One result per addition, then one per removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterAclsResponse {
    pub results: Vec<TopicResult>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListAcls;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListAclsResponse {
    pub error: ErrorCode,
    pub error_message: Option<String>,
    pub acls: Vec<AclEntry>,
}

fn bytes_in(v: Option<Vector<'_, u8>>) -> Vec<u8> {
    v.map(|b| b.bytes().to_vec()).unwrap_or_default()
}

impl AlterUsers {
    pub fn decode(r: fb::AlterUsersRequest<'_>) -> Self {
        AlterUsers {
            upserts: r
                .upserts()
                .iter()
                .flatten()
                .map(|c| Credential {
                    user: c.user().to_string(),
                    mechanism: c.mechanism().to_string(),
                    salt: bytes_in(c.salt()),
                    iterations: c.iterations(),
                    stored_key: bytes_in(c.stored_key()),
                    server_key: bytes_in(c.server_key()),
                })
                .collect(),
            deletions: strings_in(r.deletions()),
        }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::AlterUsersRequest<'a>> {
        let ups: Vec<_> = self
            .upserts
            .iter()
            .map(|c| {
                let args = fb::ScramCredentialArgs {
                    user: Some(fbb.create_string(&c.user)),
                    mechanism: Some(fbb.create_string(&c.mechanism)),
                    salt: Some(fbb.create_vector(&c.salt)),
                    iterations: c.iterations,
                    stored_key: Some(fbb.create_vector(&c.stored_key)),
                    server_key: Some(fbb.create_vector(&c.server_key)),
                };
                fb::ScramCredential::create(fbb, &args)
            })
            .collect();
        let upserts = Some(fbb.create_vector(&ups));
        let deletions = Some(strings_out(fbb, &self.deletions));
        fb::AlterUsersRequest::create(fbb, &fb::AlterUsersRequestArgs { upserts, deletions })
    }
}

impl AlterUsersResponse {
    pub fn decode(r: fb::AlterUsersResponse<'_>) -> Self {
        AlterUsersResponse { results: TopicResult::decode_all(r.results()) }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::AlterUsersResponse<'a>> {
        let results = Some(TopicResult::encode_all(fbb, &self.results));
        fb::AlterUsersResponse::create(fbb, &fb::AlterUsersResponseArgs { results })
    }
}

impl ListUsers {
    pub fn decode(_: fb::ListUsersRequest<'_>) -> Self {
        ListUsers
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::ListUsersRequest<'a>> {
        fb::ListUsersRequest::create(fbb, &fb::ListUsersRequestArgs {})
    }
}

impl ListUsersResponse {
    pub fn decode(r: fb::ListUsersResponse<'_>) -> Self {
        ListUsersResponse {
            error: r.error(),
            error_message: r.error_message().map(str::to_string),
            users: r.users().iter().flatten().map(|u| (u.name().to_string(), strings_in(u.mechanisms()))).collect(),
        }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::ListUsersResponse<'a>> {
        let error_message = opt_str(fbb, self.error_message.as_deref());
        let us: Vec<_> = self
            .users
            .iter()
            .map(|(n, m)| {
                let args = fb::UserInfoArgs { name: Some(fbb.create_string(n)), mechanisms: Some(strings_out(fbb, m)) };
                fb::UserInfo::create(fbb, &args)
            })
            .collect();
        let users = Some(fbb.create_vector(&us));
        fb::ListUsersResponse::create(fbb, &fb::ListUsersResponseArgs { error: self.error, error_message, users })
    }
}

type Entries<'a> = Vector<'a, ForwardsUOffset<fb::AclEntry<'a>>>;

impl AclEntry {
    fn decode_all(v: Option<Entries<'_>>) -> Vec<Self> {
        v.iter()
            .flatten()
            .map(|a| AclEntry {
                principal: a.principal().to_string(),
                operation: a.operation().to_string(),
                resource: a.resource().to_string(),
                name: a.name().to_string(),
                pattern: string(a.pattern()),
            })
            .collect()
    }

    fn encode_all<'a>(fbb: &mut FlatBufferBuilder<'a>, v: &[Self]) -> WIPOffset<Entries<'a>> {
        let es: Vec<_> = v
            .iter()
            .map(|a| {
                let args = fb::AclEntryArgs {
                    principal: Some(fbb.create_string(&a.principal)),
                    operation: Some(fbb.create_string(&a.operation)),
                    resource: Some(fbb.create_string(&a.resource)),
                    name: Some(fbb.create_string(&a.name)),
                    pattern: Some(fbb.create_string(&a.pattern)),
                };
                fb::AclEntry::create(fbb, &args)
            })
            .collect();
        fbb.create_vector(&es)
    }
}

impl AlterAcls {
    pub fn decode(r: fb::AlterAclsRequest<'_>) -> Self {
        AlterAcls { additions: AclEntry::decode_all(r.additions()), removals: AclEntry::decode_all(r.removals()) }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::AlterAclsRequest<'a>> {
        let additions = Some(AclEntry::encode_all(fbb, &self.additions));
        let removals = Some(AclEntry::encode_all(fbb, &self.removals));
        fb::AlterAclsRequest::create(fbb, &fb::AlterAclsRequestArgs { additions, removals })
    }
}

impl AlterAclsResponse {
    pub fn decode(r: fb::AlterAclsResponse<'_>) -> Self {
        AlterAclsResponse { results: TopicResult::decode_all(r.results()) }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::AlterAclsResponse<'a>> {
        let results = Some(TopicResult::encode_all(fbb, &self.results));
        fb::AlterAclsResponse::create(fbb, &fb::AlterAclsResponseArgs { results })
    }
}

impl ListAcls {
    pub fn decode(_: fb::ListAclsRequest<'_>) -> Self {
        ListAcls
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::ListAclsRequest<'a>> {
        fb::ListAclsRequest::create(fbb, &fb::ListAclsRequestArgs {})
    }
}

impl ListAclsResponse {
    pub fn decode(r: fb::ListAclsResponse<'_>) -> Self {
        ListAclsResponse { error: r.error(), error_message: r.error_message().map(str::to_string), acls: AclEntry::decode_all(r.acls()) }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::ListAclsResponse<'a>> {
        let error_message = opt_str(fbb, self.error_message.as_deref());
        let acls = Some(AclEntry::encode_all(fbb, &self.acls));
        fb::ListAclsResponse::create(fbb, &fb::ListAclsResponseArgs { error: self.error, error_message, acls })
    }
}

api!(request AlterUsers, AlterUsersRequest);
api!(response AlterUsersResponse, AlterUsersResponse, body_as_alter_users_response);
api!(request ListUsers, ListUsersRequest);
api!(response ListUsersResponse, ListUsersResponse, body_as_list_users_response);
api!(request AlterAcls, AlterAclsRequest);
api!(response AlterAclsResponse, AlterAclsResponse, body_as_alter_acls_response);
api!(request ListAcls, ListAclsRequest);
api!(response ListAclsResponse, ListAclsResponse, body_as_list_acls_response);
