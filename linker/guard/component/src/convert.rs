//! Conversions between the `standard` types the guard exports to the library (`ex`) and those it
//! imports from the runtime (`rt`): the same WIT types, generated twice.

use crate::{ex, rt};

/// `From` both ways for a record whose fields convert with `Into`.
macro_rules! record {
    ($name:ident { $($field:ident),* $(,)? }) => {
        impl From<ex::$name> for rt::$name {
            fn from(value: ex::$name) -> Self {
                rt::$name { $($field: value.$field.into()),* }
            }
        }
        impl From<rt::$name> for ex::$name {
            fn from(value: rt::$name) -> Self {
                ex::$name { $($field: value.$field.into()),* }
            }
        }
    };
}

/// `From` both ways for an enum of unit cases.
macro_rules! cases {
    ($name:ident { $($case:ident),* $(,)? }) => {
        impl From<ex::$name> for rt::$name {
            fn from(value: ex::$name) -> Self {
                match value { $(ex::$name::$case => rt::$name::$case),* }
            }
        }
        impl From<rt::$name> for ex::$name {
            fn from(value: rt::$name) -> Self {
                match value { $(rt::$name::$case => ex::$name::$case),* }
            }
        }
    };
}

record!(ProcessId {
    process_name,
    package_name,
    publisher_node,
});
record!(Address { node, process });
record!(LazyLoadBlob { mime, bytes });
record!(Capability { issuer, params });
cases!(SendErrorKind { Offline, Timeout });
cases!(SpawnError {
    NameTaken,
    NoFileAtPath,
});

/// Converts each element of a list.
fn list<A: Into<B>, B>(items: Vec<A>) -> Vec<B> {
    items.into_iter().map(Into::into).collect()
}

impl From<ex::Request> for rt::Request {
    fn from(value: ex::Request) -> Self {
        rt::Request {
            inherit: value.inherit,
            expects_response: value.expects_response,
            body: value.body,
            metadata: value.metadata,
            capabilities: list(value.capabilities),
        }
    }
}

impl From<rt::Request> for ex::Request {
    fn from(value: rt::Request) -> Self {
        ex::Request {
            inherit: value.inherit,
            expects_response: value.expects_response,
            body: value.body,
            metadata: value.metadata,
            capabilities: list(value.capabilities),
        }
    }
}

impl From<ex::Response> for rt::Response {
    fn from(value: ex::Response) -> Self {
        rt::Response {
            inherit: value.inherit,
            body: value.body,
            metadata: value.metadata,
            capabilities: list(value.capabilities),
        }
    }
}

impl From<rt::Response> for ex::Response {
    fn from(value: rt::Response) -> Self {
        ex::Response {
            inherit: value.inherit,
            body: value.body,
            metadata: value.metadata,
            capabilities: list(value.capabilities),
        }
    }
}

impl From<rt::Message> for ex::Message {
    fn from(value: rt::Message) -> Self {
        match value {
            rt::Message::Request(request) => ex::Message::Request(request.into()),
            rt::Message::Response((response, context)) => {
                ex::Message::Response((response.into(), context))
            }
        }
    }
}

impl From<rt::SendError> for ex::SendError {
    fn from(value: rt::SendError) -> Self {
        ex::SendError {
            kind: value.kind.into(),
            target: value.target.into(),
            message: value.message.into(),
            lazy_load_blob: value.lazy_load_blob.map(Into::into),
        }
    }
}

/// One `on-exit` request: where, what, and its blob.
type ExitRequest<A, R, B> = (A, R, Option<B>);

impl From<ex::OnExit> for rt::OnExit {
    fn from(value: ex::OnExit) -> Self {
        match value {
            ex::OnExit::None => rt::OnExit::None,
            ex::OnExit::Restart => rt::OnExit::Restart,
            ex::OnExit::Requests(requests) => rt::OnExit::Requests(
                requests
                    .into_iter()
                    .map(
                        |(target, request, blob): ExitRequest<_, _, ex::LazyLoadBlob>| {
                            (target.into(), request.into(), blob.map(Into::into))
                        },
                    )
                    .collect(),
            ),
        }
    }
}

impl From<rt::OnExit> for ex::OnExit {
    fn from(value: rt::OnExit) -> Self {
        match value {
            rt::OnExit::None => ex::OnExit::None,
            rt::OnExit::Restart => ex::OnExit::Restart,
            rt::OnExit::Requests(requests) => ex::OnExit::Requests(
                requests
                    .into_iter()
                    .map(
                        |(target, request, blob): ExitRequest<_, _, rt::LazyLoadBlob>| {
                            (target.into(), request.into(), blob.map(Into::into))
                        },
                    )
                    .collect(),
            ),
        }
    }
}
