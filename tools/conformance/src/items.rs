//! The resources, resource template and prompts the conformance suite reads and gets.

use portcullis_sdk::{
    Argument, Arguments, Completion, Content, Contents, Error, Message, Prompt, Resource,
    ResourceTemplate,
};

use super::{PNG, png};

pub struct StaticText;

impl Resource for StaticText {
    const URI: &'static str = "test://static-text";
    const NAME: &'static str = "static-text";
    const DESCRIPTION: Option<&'static str> = Some("A static text resource.");
    const MIME_TYPE: Option<&'static str> = Some("text/plain");

    fn read() -> Result<Vec<Contents>, Error> {
        Ok(vec![Contents::text(
            Self::URI,
            "This is the content of the static text resource.",
        )])
    }
}

pub struct StaticBinary;

impl Resource for StaticBinary {
    const URI: &'static str = "test://static-binary";
    const NAME: &'static str = "static-binary";
    const DESCRIPTION: Option<&'static str> = Some("A static binary resource (a 1x1 PNG).");
    const MIME_TYPE: Option<&'static str> = Some("image/png");

    fn read() -> Result<Vec<Contents>, Error> {
        Ok(vec![Contents::blob(Self::URI, "image/png", PNG.to_vec())])
    }
}

pub struct Watched;

impl Resource for Watched {
    const URI: &'static str = "test://watched-resource";
    const NAME: &'static str = "watched-resource";
    const DESCRIPTION: Option<&'static str> = Some("A resource clients subscribe to.");
    const MIME_TYPE: Option<&'static str> = Some("text/plain");

    fn read() -> Result<Vec<Contents>, Error> {
        Ok(vec![Contents::text(Self::URI, "Watched resource content.")])
    }
}

pub struct TemplateData;

impl ResourceTemplate for TemplateData {
    const URI_TEMPLATE: &'static str = "test://template/{id}/data";
    const NAME: &'static str = "template-data";
    const DESCRIPTION: Option<&'static str> = Some("Data for an id, from a URI template.");
    const MIME_TYPE: Option<&'static str> = Some("application/json");

    fn read(uri: &str, variables: &Arguments) -> Result<Vec<Contents>, Error> {
        let id = variables.require("id")?;
        let data = portcullis_sdk::json!({
            "id": id, "templateTest": true, "data": format!("Data for ID: {id}"),
        });
        Ok(vec![
            Contents::text(uri, data.to_string()).with_mime_type("application/json"),
        ])
    }
}

pub struct SimplePrompt;

impl Prompt for SimplePrompt {
    const NAME: &'static str = "test_simple_prompt";
    const DESCRIPTION: Option<&'static str> = Some("A simple prompt without arguments.");

    fn get(_: &Arguments) -> Result<Vec<Message>, Error> {
        Ok(vec![Message::user_text(
            "This is a simple prompt for testing.",
        )])
    }
}

pub struct WithArguments;

impl Prompt for WithArguments {
    const NAME: &'static str = "test_prompt_with_arguments";
    const DESCRIPTION: Option<&'static str> = Some("A prompt with two required arguments.");
    const ARGUMENTS: &'static [Argument] = &[
        Argument::required("arg1", "First test argument"),
        Argument::required("arg2", "Second test argument"),
    ];

    fn get(arguments: &Arguments) -> Result<Vec<Message>, Error> {
        let (arg1, arg2) = (arguments.require("arg1")?, arguments.require("arg2")?);
        Ok(vec![Message::user_text(format!(
            "Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
        ))])
    }

    fn complete(_argument: &str, value: &str, _context: &Arguments) -> Completion {
        Completion::matching(["test", "testing", "tested", "value"], value)
    }
}

pub struct WithEmbeddedResource;

impl Prompt for WithEmbeddedResource {
    const NAME: &'static str = "test_prompt_with_embedded_resource";
    const DESCRIPTION: Option<&'static str> = Some("A prompt that embeds a resource.");
    const ARGUMENTS: &'static [Argument] = &[Argument::required(
        "resourceUri",
        "URI of the resource to embed",
    )];

    fn get(arguments: &Arguments) -> Result<Vec<Message>, Error> {
        let uri = arguments.require("resourceUri")?;
        Ok(vec![
            Message::user(Content::Embedded(Contents::text(
                uri,
                "Embedded resource content for testing.",
            ))),
            Message::user_text("Please process the embedded resource above."),
        ])
    }
}

pub struct WithImage;

impl Prompt for WithImage {
    const NAME: &'static str = "test_prompt_with_image";
    const DESCRIPTION: Option<&'static str> = Some("A prompt with an image.");

    fn get(_: &Arguments) -> Result<Vec<Message>, Error> {
        Ok(vec![
            Message::user(png()),
            Message::user_text("Please analyze the image above."),
        ])
    }
}
