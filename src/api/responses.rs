//! `responses!`: an operation's `#[derive(ApiResponse)]` enum written as its list of
//! statuses, each with its `///` docs (the document's descriptions), so that what every
//! operation answers alike is written once: the error body of the error variants, the
//! `401` of a write, the `415` of a JSON body, the refusals and the database's `503`.

/// `responses! { pub enum R refused { ... } }`: the response enum `R` of an operation, one
/// variant a line, `STATUS Name(Payload),` or, for an error, `STATUS Name,` (its payload the
/// error body). `401 Unauthorized,` and `415 UnsupportedMediaType,` take no docs: they are
/// the same for every operation, the bearer challenge included.
///
/// After the name, how poem-openapi's refusals are answered ([`super::error::refused`] as
/// its `bad_request_handler`): `refused`, each as `BadRequest` (`refusal!(R)`);
/// `refused(body)`, for a write that takes a JSON body (`refusal!(R, body)`). An operation
/// whose refusals differ gives `#[oai(bad_request_handler = "refused")]` and implements
/// [`super::error::Refusal`] by hand; one without parameters gives neither.
///
/// A `503 ServiceUnavailable,` with the error body is also `R`'s
/// [`super::error::Unavailable`]: the answer when the database fails.
macro_rules! responses {
    ($(#[$attr:meta])* $vis:vis enum $name:ident refused(body) { $($variants:tt)* }) => {
        $crate::api::responses::responses!(
            @variant $name
            [$(#[$attr])* #[oai(bad_request_handler = "refused")] $vis enum $name]
            []
            [$crate::api::error::refusal!($name, body);]
            $($variants)*
        );
    };
    ($(#[$attr:meta])* $vis:vis enum $name:ident refused { $($variants:tt)* }) => {
        $crate::api::responses::responses!(
            @variant $name
            [$(#[$attr])* #[oai(bad_request_handler = "refused")] $vis enum $name]
            []
            [$crate::api::error::refusal!($name);]
            $($variants)*
        );
    };
    ($(#[$attr:meta])* $vis:vis enum $name:ident { $($variants:tt)* }) => {
        $crate::api::responses::responses!(
            @variant $name [$(#[$attr])* $vis enum $name] [] [] $($variants)*
        );
    };
    // One variant at a time: the enum so far in `[$($done)*]`, the impls in `[$($impls)*]`.
    (@variant $name:ident $head:tt [$($done:tt)*] $impls:tt 401 Unauthorized, $($rest:tt)*) => {
        $crate::api::responses::responses!(@variant $name $head [$($done)*
            /// `API_TOKEN` is set and the bearer token is missing or wrong.
            #[oai(status = 401)]
            Unauthorized(
                poem_openapi::payload::Json<$crate::api::error::ErrorBody>,
                #[oai(header = "WWW-Authenticate")] String,
            ),
        ] $impls $($rest)*);
    };
    (@variant $name:ident $head:tt [$($done:tt)*] $impls:tt 415 UnsupportedMediaType, $($rest:tt)*) => {
        $crate::api::responses::responses!(@variant $name $head [$($done)*
            /// The body is not `application/json`.
            #[oai(status = 415)]
            UnsupportedMediaType(poem_openapi::payload::Json<$crate::api::error::ErrorBody>),
        ] $impls $($rest)*);
    };
    (@variant $name:ident $head:tt [$($done:tt)*] [$($impls:tt)*]
        $(#[$doc:meta])* 503 ServiceUnavailable, $($rest:tt)*) => {
        $crate::api::responses::responses!(@variant $name $head [$($done)*
            $(#[$doc])*
            #[oai(status = 503)]
            ServiceUnavailable(poem_openapi::payload::Json<$crate::api::error::ErrorBody>),
        ] [$($impls)* $crate::api::error::unavailable!($name);] $($rest)*);
    };
    (@variant $name:ident $head:tt [$($done:tt)*] $impls:tt
        $(#[$doc:meta])* $status:literal $variant:ident ($($payload:tt)*), $($rest:tt)*) => {
        $crate::api::responses::responses!(@variant $name $head [$($done)*
            $(#[$doc])*
            #[oai(status = $status)]
            $variant($($payload)*),
        ] $impls $($rest)*);
    };
    (@variant $name:ident $head:tt [$($done:tt)*] $impls:tt
        $(#[$doc:meta])* $status:literal $variant:ident, $($rest:tt)*) => {
        $crate::api::responses::responses!(@variant $name $head [$($done)*
            $(#[$doc])*
            #[oai(status = $status)]
            $variant(poem_openapi::payload::Json<$crate::api::error::ErrorBody>),
        ] $impls $($rest)*);
    };
    (@variant $name:ident [$($head:tt)*] [$($done:tt)*] [$($impls:tt)*]) => {
        #[derive(poem_openapi::ApiResponse)]
        $($head)* { $($done)* }

        $($impls)*
    };
}
pub(super) use responses;
