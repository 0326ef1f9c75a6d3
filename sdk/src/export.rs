//! What [`export_tools!`](crate::export_tools) and [`export_component!`](crate::export_component)
//! expand to call. Not part of the stable API.

use super::{
    Annotations, Arguments, Body, Completion, Content, Contents, Error, Output, Prompt, Resource,
    ResourceTemplate, Role, Tool, wit,
};

pub use crate::bindings::exports::portcullis::tool::tool::Guest;
pub use wit::{CallResult, ToolError, ToolInfo};

fn annotations(a: Annotations) -> wit::Annotations {
    wit::Annotations {
        read_only: a.read_only,
        destructive: a.destructive,
        idempotent: a.idempotent,
        open_world: a.open_world,
    }
}

/// The descriptor of tool `T`.
pub fn describe<T: Tool>() -> ToolInfo {
    let input = super::schema_for::<T::Input>();
    ToolInfo {
        name: T::NAME.to_string(),
        title: T::TITLE.map(str::to_string),
        description: T::DESCRIPTION.to_string(),
        input_schema: input.as_value().to_string(),
        output_schema: T::output_schema().map(|s| s.as_value().to_string()),
        annotations: annotations(T::ANNOTATIONS),
    }
}

pub(crate) fn role(role: Role) -> wit::Role {
    match role {
        Role::User => wit::Role::User,
        Role::Assistant => wit::Role::Assistant,
    }
}

fn contents(c: Contents) -> wit::EmbeddedResource {
    let (text, blob) = match c.body {
        Body::Text(text) => (Some(text), None),
        Body::Blob(data) => (None, Some(data)),
    };
    wit::EmbeddedResource {
        uri: c.uri,
        mime_type: c.mime_type,
        text,
        blob,
    }
}

pub(crate) fn content(item: Content) -> wit::Content {
    let kind = match item {
        Content::Annotated(inner, a) => {
            let mut converted = content(*inner);
            converted.annotations = Some(wit::ContentAnnotations {
                audience: a.audience.into_iter().map(role).collect(),
                priority: a.priority,
                last_modified: a.last_modified,
            });
            return converted;
        }
        Content::Text(text) => wit::ContentKind::Text(text),
        Content::Json(value) => wit::ContentKind::Json(value.to_string()),
        Content::Image { data, mime_type } => {
            wit::ContentKind::Image(wit::Media { data, mime_type })
        }
        Content::Audio { data, mime_type } => {
            wit::ContentKind::Audio(wit::Media { data, mime_type })
        }
        Content::Resource {
            uri,
            mime_type,
            text,
        } => wit::ContentKind::Embedded(wit::EmbeddedResource {
            uri,
            mime_type,
            text: Some(text),
            blob: None,
        }),
        Content::Embedded(c) => wit::ContentKind::Embedded(contents(c)),
        Content::Link(l) => wit::ContentKind::Link(wit::ResourceLink {
            uri: l.uri,
            name: l.name,
            title: l.title,
            description: l.description,
            mime_type: l.mime_type,
            size: l.size,
        }),
    };
    wit::Content {
        kind,
        annotations: None,
    }
}

fn text(s: Option<&'static str>) -> Option<String> {
    s.map(str::to_string)
}

/// The descriptor of resource `R`.
pub fn describe_resource<R: Resource>() -> wit::ResourceInfo {
    wit::ResourceInfo {
        uri: R::URI.to_string(),
        name: R::NAME.to_string(),
        title: text(R::TITLE),
        description: text(R::DESCRIPTION),
        mime_type: text(R::MIME_TYPE),
        size: None,
    }
}

/// The descriptor of template `T`.
pub fn describe_template<T: ResourceTemplate>() -> wit::ResourceTemplate {
    wit::ResourceTemplate {
        uri_template: T::URI_TEMPLATE.to_string(),
        name: T::NAME.to_string(),
        title: text(T::TITLE),
        description: text(T::DESCRIPTION),
        mime_type: text(T::MIME_TYPE),
    }
}

/// The descriptor of prompt `P`.
pub fn describe_prompt<P: Prompt>() -> wit::PromptInfo {
    wit::PromptInfo {
        name: P::NAME.to_string(),
        title: text(P::TITLE),
        description: text(P::DESCRIPTION),
        arguments: P::ARGUMENTS
            .iter()
            .map(|a| wit::PromptArgument {
                name: a.name.to_string(),
                title: text(a.title),
                description: text(a.description),
                required: a.required,
            })
            .collect(),
    }
}

fn read_result(
    read: Result<Vec<Contents>, Error>,
) -> Result<Vec<wit::EmbeddedResource>, wit::ReadError> {
    match read {
        Ok(items) => Ok(items.into_iter().map(contents).collect()),
        Err(Error::InvalidInput(m) | Error::Failed(m)) => Err(wit::ReadError::Failed(m)),
    }
}

/// Reads resource `R`.
pub fn read<R: Resource>() -> Result<Vec<wit::EmbeddedResource>, wit::ReadError> {
    read_result(R::read())
}

/// Reads `uri` through template `T`.
pub fn read_template<T: ResourceTemplate>(
    uri: &str,
    variables: Vec<(String, String)>,
) -> Result<Vec<wit::EmbeddedResource>, wit::ReadError> {
    read_result(T::read(uri, &variables.into_iter().collect()))
}

/// Runs prompt `P`.
pub fn get<P: Prompt>(
    arguments: Vec<(String, String)>,
) -> Result<wit::PromptResult, wit::PromptError> {
    match P::get(&arguments.into_iter().collect()) {
        Ok(messages) => Ok(wit::PromptResult {
            description: text(P::DESCRIPTION),
            messages: messages
                .into_iter()
                .map(|m| wit::PromptMessage {
                    role: role(m.role),
                    content: content(m.content),
                })
                .collect(),
        }),
        Err(Error::InvalidInput(m)) => Err(wit::PromptError::InvalidArguments(m)),
        Err(Error::Failed(m)) => Err(wit::PromptError::Failed(m)),
    }
}

/// A completion in WIT's terms.
pub fn completion(c: Completion) -> wit::Completion {
    wit::Completion {
        values: c.values,
        total: c.total,
        has_more: c.has_more,
    }
}

/// The context of a completion request.
pub fn context(context: Vec<(String, String)>) -> Arguments {
    context.into_iter().collect()
}

pub use crate::bindings::exports::portcullis::tool::completion::Guest as CompletionGuest;
pub use crate::bindings::exports::portcullis::tool::prompts::Guest as PromptsGuest;
pub use crate::bindings::exports::portcullis::tool::resources::Guest as ResourcesGuest;
pub use wit::Completion as WitCompletion;
pub use wit::{
    CompletionRequest, CompletionTarget, EmbeddedResource, PromptError, PromptInfo, PromptResult,
    ReadError, ResourceList,
};

/// Decodes the input, runs tool `T`, encodes the result.
pub fn dispatch<T: Tool>(input: &str) -> Result<CallResult, ToolError> {
    let input: T::Input = serde_json::from_str(input)
        .map_err(|e| ToolError::InvalidInput(format!("{}: {e}", T::NAME)))?;
    match T::call(input) {
        Ok(Output {
            content: items,
            structured,
            is_error,
        }) => Ok(CallResult {
            content: items.into_iter().map(content).collect(),
            structured: structured.map(|v| v.to_string()),
            is_error,
        }),
        Err(Error::InvalidInput(message)) => Err(ToolError::InvalidInput(message)),
        Err(Error::Failed(message)) => Err(ToolError::Failed(message)),
    }
}

/// Exports the listed [`Tool`] types as this crate's component (tools only; see
/// [`export_component!`] for resources and prompts).
///
/// ```ignore
/// portcullis_sdk::export_tools!(ReadFile, WriteFile);
/// ```
///
/// Use it once per crate, at the crate root; the crate must be a `cdylib`.
#[macro_export]
macro_rules! export_tools {
    ($($tool:ty),+ $(,)?) => {
        $crate::export_component! { tools: [$($tool),+] }
    };
}

/// Exports tools, resources, resource templates and prompts as this crate's component. Every
/// section is optional; those present come in this order.
///
/// ```ignore
/// portcullis_sdk::export_component! {
///     tools: [Search],
///     resources: [Readme],
///     templates: [TableSchema],
///     prompts: [Review],
/// }
/// ```
///
/// Use it once per crate, at the crate root; the crate must be a `cdylib`. Completions of a
/// prompt's arguments and a template's variables come from [`Prompt::complete`] and
/// [`ResourceTemplate::complete`].
#[macro_export]
macro_rules! export_component {
    (
        $(tools: [$($tool:ty),* $(,)?] $(,)?)?
        $(resources: [$($resource:ty),* $(,)?] $(,)?)?
        $(templates: [$($template:ty),* $(,)?] $(,)?)?
        $(prompts: [$($prompt:ty),* $(,)?] $(,)?)?
    ) => {
        #[doc(hidden)]
        pub struct __PortcullisComponent;

        impl $crate::__private::Guest for __PortcullisComponent {
            fn describe() -> ::std::vec::Vec<$crate::__private::ToolInfo> {
                ::std::vec![$($($crate::__private::describe::<$tool>()),*)?]
            }

            fn call(
                name: ::std::string::String,
                input: ::std::string::String,
            ) -> ::std::result::Result<$crate::__private::CallResult, $crate::__private::ToolError> {
                $($(
                    if name == <$tool as $crate::Tool>::NAME {
                        return $crate::__private::dispatch::<$tool>(&input);
                    }
                )*)?
                let _ = &input;
                ::std::result::Result::Err($crate::__private::ToolError::UnknownTool(name))
            }
        }

        impl $crate::__private::ResourcesGuest for __PortcullisComponent {
            fn describe() -> $crate::__private::ResourceList {
                $crate::__private::ResourceList {
                    resources: ::std::vec![$($($crate::__private::describe_resource::<$resource>()),*)?],
                    templates: ::std::vec![$($($crate::__private::describe_template::<$template>()),*)?],
                }
            }

            fn read(
                uri: ::std::string::String,
                template: ::std::option::Option<::std::string::String>,
                variables: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
            ) -> ::std::result::Result<::std::vec::Vec<$crate::__private::EmbeddedResource>, $crate::__private::ReadError> {
                match template.as_deref() {
                    ::std::option::Option::None => {
                        $($(
                            if uri == <$resource as $crate::Resource>::URI {
                                return $crate::__private::read::<$resource>();
                            }
                        )*)?
                    }
                    ::std::option::Option::Some(template) => {
                        $($(
                            if template == <$template as $crate::ResourceTemplate>::URI_TEMPLATE {
                                return $crate::__private::read_template::<$template>(&uri, variables);
                            }
                        )*)?
                        let _ = (template, &variables);
                    }
                }
                ::std::result::Result::Err($crate::__private::ReadError::NotFound(uri))
            }
        }

        impl $crate::__private::PromptsGuest for __PortcullisComponent {
            fn describe() -> ::std::vec::Vec<$crate::__private::PromptInfo> {
                ::std::vec![$($($crate::__private::describe_prompt::<$prompt>()),*)?]
            }

            fn get(
                name: ::std::string::String,
                arguments: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
            ) -> ::std::result::Result<$crate::__private::PromptResult, $crate::__private::PromptError> {
                $($(
                    if name == <$prompt as $crate::Prompt>::NAME {
                        return $crate::__private::get::<$prompt>(arguments);
                    }
                )*)?
                let _ = &arguments;
                ::std::result::Result::Err($crate::__private::PromptError::UnknownPrompt(name))
            }
        }

        impl $crate::__private::CompletionGuest for __PortcullisComponent {
            fn complete(
                request: $crate::__private::CompletionRequest,
            ) -> ::std::result::Result<$crate::__private::WitCompletion, ::std::string::String> {
                let context = $crate::__private::context(request.context);
                let (argument, value) = (request.argument.as_str(), request.value.as_str());
                let _ = (&context, argument, value);
                match &request.target {
                    $crate::__private::CompletionTarget::Prompt(name) => {
                        $($(
                            if name == <$prompt as $crate::Prompt>::NAME {
                                return ::std::result::Result::Ok($crate::__private::completion(
                                    <$prompt as $crate::Prompt>::complete(argument, value, &context),
                                ));
                            }
                        )*)?
                        let _ = name;
                    }
                    $crate::__private::CompletionTarget::ResourceTemplate(text) => {
                        $($(
                            if text == <$template as $crate::ResourceTemplate>::URI_TEMPLATE {
                                return ::std::result::Result::Ok($crate::__private::completion(
                                    <$template as $crate::ResourceTemplate>::complete(argument, value, &context),
                                ));
                            }
                        )*)?
                        let _ = text;
                    }
                }
                ::std::result::Result::Ok($crate::__private::completion($crate::Completion::default()))
            }
        }

        $crate::bindings::__export_component!(__PortcullisComponent);
    };
}
