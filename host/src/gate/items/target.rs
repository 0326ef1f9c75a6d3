//! What an item request is about, what policy sees of it, and who may see it (`list`).

use std::sync::Arc;

use super::super::{Asked, GateError, Gateway, Transport};
use crate::catalog::{LoadedComponent, PromptEntry, Resolved, ResourceEntry, TemplateEntry};
use crate::policy::{Principal, PromptFacts, ResourceFacts};

/// The item a request is about, with what policy sees of it.
pub(super) struct Target {
    /// `resource:<uri or template>` or `prompt:<name>`: bounded by the catalog, for the audit
    /// trail's tool column and metrics.
    pub(super) label: String,
    pub(super) resource: Option<ResourceFacts>,
    pub(super) prompt: Option<PromptFacts>,
    pub(super) component: Arc<LoadedComponent>,
    pub(super) kind: &'static str,
    /// What the client asked for, for "unknown" answers.
    pub(super) asked: String,
}

fn fixed_facts(entry: &ResourceEntry) -> ResourceFacts {
    ResourceFacts {
        uri: entry.uri.clone(),
        name: entry.text.name.clone(),
        template: None,
        mime_type: entry.mime_type.clone(),
        component: entry.component.name.clone(),
        digest: entry.component.digest.clone(),
        descriptor_digest: entry.digest.clone(),
    }
}

fn template_facts(entry: &TemplateEntry, uri: &str) -> ResourceFacts {
    ResourceFacts {
        uri: uri.to_string(),
        name: entry.text.name.clone(),
        template: Some(entry.template.as_str().to_string()),
        mime_type: entry.mime_type.clone(),
        component: entry.component.name.clone(),
        digest: entry.component.digest.clone(),
        descriptor_digest: entry.digest.clone(),
    }
}

fn prompt_facts(entry: &PromptEntry) -> PromptFacts {
    PromptFacts {
        name: entry.text.name.clone(),
        component: entry.component.name.clone(),
        digest: entry.component.digest.clone(),
        descriptor_digest: entry.digest.clone(),
    }
}

impl Target {
    pub(super) fn template(entry: &TemplateEntry, uri: &str) -> Self {
        Self {
            label: format!("resource:{}", entry.template.as_str()),
            resource: Some(template_facts(entry, uri)),
            prompt: None,
            component: entry.component.clone(),
            kind: "resource",
            asked: uri.to_string(),
        }
    }

    pub(super) fn prompt(entry: &PromptEntry) -> Self {
        Self {
            label: format!("prompt:{}", entry.text.name),
            resource: None,
            prompt: Some(prompt_facts(entry)),
            component: entry.component.clone(),
            kind: "prompt",
            asked: entry.text.name.clone(),
        }
    }

    pub(super) fn unknown(&self) -> GateError {
        GateError::UnknownItem {
            kind: self.kind,
            name: self.asked.clone(),
        }
    }
}

/// A resource read's target, the template its URI matched (if any) and the variables.
pub(super) type Resolution = (Target, Option<String>, Vec<(String, String)>);

impl Gateway {
    /// The resource `uri` leads to, with the template it matched and its variables.
    pub(super) fn resolve(&self, uri: &str) -> Result<Resolution, GateError> {
        let resolved = self
            .catalog
            .current()
            .resolve(uri)
            .map_err(|why| GateError::Schema(vec![why]))?;
        Ok(
            match resolved.ok_or_else(|| super::unknown("resource", uri))? {
                Resolved::Fixed(entry) => {
                    let target = Target {
                        label: format!("resource:{}", entry.uri),
                        resource: Some(fixed_facts(&entry)),
                        prompt: None,
                        component: entry.component.clone(),
                        kind: "resource",
                        asked: uri.to_string(),
                    };
                    (target, None, Vec::new())
                }
                Resolved::Template { entry, variables } => {
                    let template = Some(entry.template.as_str().to_string());
                    (Target::template(&entry, uri), template, variables)
                }
            },
        )
    }

    fn may_list_item(
        &self,
        principal: &Principal,
        resource: Option<ResourceFacts>,
        prompt: Option<PromptFacts>,
        context: &crate::policy::RequestContext,
    ) -> bool {
        self.may_see(principal, None, resource, prompt, context)
    }

    /// The fixed resources and the templates `principal` may see (policy action `list`).
    pub fn visible_resources(
        &self,
        principal: &Principal,
        transport: Transport,
    ) -> (Vec<Arc<ResourceEntry>>, Vec<Arc<TemplateEntry>>) {
        let context = self.context(transport, Asked::default());
        let catalog = self.catalog.current();
        let fixed = catalog
            .resources()
            .filter(|r| self.may_list_item(principal, Some(fixed_facts(r)), None, &context))
            .cloned()
            .collect();
        let templates = catalog
            .templates()
            .filter(|t| {
                let facts = template_facts(t, t.template.as_str());
                self.may_list_item(principal, Some(facts), None, &context)
            })
            .cloned()
            .collect();
        (fixed, templates)
    }

    /// The prompts `principal` may see (policy action `list`).
    pub fn visible_prompts(
        &self,
        principal: &Principal,
        transport: Transport,
    ) -> Vec<Arc<PromptEntry>> {
        let context = self.context(transport, Asked::default());
        self.catalog
            .current()
            .prompts()
            .filter(|p| self.may_list_item(principal, None, Some(prompt_facts(p)), &context))
            .cloned()
            .collect()
    }
    /// `error`, unless the principal may not see the item: then it is unknown.
    pub(super) fn hidden_or(
        &self,
        principal: &Principal,
        target: &Target,
        transport: Transport,
        error: GateError,
    ) -> GateError {
        match self.hidden_or_ok(principal, target, transport) {
            Err(unknown) => unknown,
            Ok(()) => error,
        }
    }

    pub(super) fn hidden_or_ok(
        &self,
        principal: &Principal,
        target: &Target,
        transport: Transport,
    ) -> Result<(), GateError> {
        let context = self.context(transport, Asked::default());
        let visible = self.may_list_item(
            principal,
            target.resource.clone(),
            target.prompt.clone(),
            &context,
        );
        if visible {
            Ok(())
        } else {
            Err(target.unknown())
        }
    }

    /// Whether `component` (this very build of it) serves `uri` now.
    pub(in crate::gate) fn serves(&self, component: &LoadedComponent, uri: &str) -> bool {
        self.resolve(uri).is_ok_and(|(target, _, _)| {
            target.component.name == component.name && target.component.digest == component.digest
        })
    }

    /// Whether `principal` may follow `uri` (`resources/subscribe`): it must lead to a resource
    /// it may list (checked again before each update is delivered).
    pub fn may_watch(
        &self,
        principal: &Principal,
        uri: &str,
        transport: Transport,
    ) -> Result<(), GateError> {
        let (target, _, _) = self.resolve(uri)?;
        self.hidden_or_ok(principal, &target, transport)
    }
}
