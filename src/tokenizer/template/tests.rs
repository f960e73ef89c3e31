//! Hand-written expectations for the built-in formats and the sandbox's limits.

use super::*;

fn opts() -> RenderOptions {
    RenderOptions {
        add_generation_prompt: true,
        bos_token: "<bos>".into(),
        eos_token: "<eos>".into(),
        date: Some("25 Nov 2026".into()),
        tools: None,
    }
}

fn render(src: &str) -> Result<String, TemplateError> {
    ChatTemplate::new(src, TemplateOrigin::File("test.jinja".into()))?
        .render(&[Message::new("user", "hi")], &opts())
}

#[test]
fn gemma3_builtin_folds_the_system_prompt_into_the_first_user_turn() {
    let t = ChatTemplate::builtin("gemma3").unwrap();
    let msgs = [
        Message::new("system", "Be brief."),
        Message::new("user", "Hi!"),
        Message::new("assistant", "Hello."),
        Message::new("user", "What is 2+2?"),
    ];
    let want = "<bos><start_of_turn>user\nBe brief.\n\nHi!<end_of_turn>\n\
                <start_of_turn>model\nHello.<end_of_turn>\n\
                <start_of_turn>user\nWhat is 2+2?<end_of_turn>\n\
                <start_of_turn>model\n";
    assert_eq!(t.render(&msgs, &opts()).unwrap(), want);
    assert_eq!(
        t.describe(),
        "built-in gemma3 turn format (the GGUF has no template)"
    );
    let no_prompt = RenderOptions {
        add_generation_prompt: false,
        ..opts()
    };
    let one = t.render(&msgs[1..2], &no_prompt).unwrap();
    assert_eq!(one, "<bos><start_of_turn>user\nHi!<end_of_turn>\n");
}

#[test]
fn gemma3_builtin_refuses_turns_that_do_not_alternate() {
    let t = ChatTemplate::builtin("gemma3").unwrap();
    let msgs = [Message::new("user", "a"), Message::new("user", "b")];
    assert!(
        matches!(t.render(&msgs, &opts()), Err(TemplateError::Raised(m)) if m.contains("alternate"))
    );
}

#[test]
fn chatml_and_llama3_builtins() {
    let msgs = [Message::new("system", "S"), Message::new("user", "U")];
    let qwen = ChatTemplate::builtin("qwen3")
        .unwrap()
        .render(&msgs, &opts())
        .unwrap();
    assert_eq!(
        qwen,
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    );
    let llama = ChatTemplate::builtin("llama")
        .unwrap()
        .render(&msgs, &opts())
        .unwrap();
    assert_eq!(
        llama,
        "<bos><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    assert!(ChatTemplate::builtin("bert").is_none());
}

#[test]
fn phi3_mistral3_and_harmony_builtins() {
    let msgs = [
        Message::new("system", "S"),
        Message::new("user", "U"),
        Message::new("assistant", "A"),
        Message::new("user", "V"),
    ];
    let render = |arch: &str| {
        ChatTemplate::builtin(arch)
            .unwrap()
            .render(&msgs, &opts())
            .unwrap()
    };
    assert_eq!(
        render("phi3"),
        "<|system|>\nS<|end|>\n<|user|>\nU<|end|>\n<|assistant|>\nA<|end|>\n<|user|>\nV<|end|>\n<|assistant|>\n"
    );
    assert_eq!(
        render("mistral3"),
        "<bos>[SYSTEM_PROMPT]S[/SYSTEM_PROMPT][INST]U[/INST]A<eos>[INST]V[/INST]"
    );
    let h = render("gpt-oss");
    assert!(
        h.starts_with("<|start|>system<|message|>You are ChatGPT"),
        "{h}"
    );
    assert!(
        h.ends_with(
            "<|start|>developer<|message|># Instructions\n\nS<|end|>\
             <|start|>user<|message|>U<|end|>\
             <|start|>assistant<|channel|>final<|message|>A<|end|>\
             <|start|>user<|message|>V<|end|><|start|>assistant"
        ),
        "{h}"
    );
    assert_eq!(render("qwen3moe"), render("qwen3"));
}

#[test]
fn output_over_the_limit_errors() {
    let src = "{% for i in range(2000) %}{{ 'x' * 1000 }}{% endfor %}";
    assert!(matches!(render(src), Err(TemplateError::OutputTooLarge(_))));
}

#[test]
fn endless_loops_error_instead_of_hanging() {
    // A huge range is refused up front; nested loops within the range limit burn fuel.
    let r = render("{% for i in range(100000000) %}{% endfor %}");
    assert!(
        matches!(&r, Err(TemplateError::Render(m)) if m.contains("range")),
        "{r:?}"
    );
    let r =
        render("{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}");
    assert!(matches!(r, Err(TemplateError::OutOfFuel(_))), "{r:?}");
}

#[test]
fn huge_data_runs_out_of_fuel_before_it_is_allocated() {
    // Each of these once allocated a gigabyte or more (found by fuzzing); minijinja
    // charges data against the fuel, so the budget refuses them.
    for src in [
        "{{ 'x'|indent(1000000000, true) }}",
        "{{ '%0999999999d'|format(1) }}",
        "{% set ns = namespace(s='aaaaaaaaaa') %}{% for i in range(40) %}\
         {% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
        "{% set x = 'a' * 100000000 %}{{ x|length }}",
    ] {
        let r = render(src);
        assert!(
            matches!(r, Err(TemplateError::OutOfFuel(_))),
            "{src}: {r:?}"
        );
    }
}

#[test]
fn deep_recursion_errors() {
    let src = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
    assert!(matches!(render(src), Err(TemplateError::Render(_))));
}

#[test]
fn parse_errors_name_the_problem() {
    let e = ChatTemplate::new("{% for m in messages %}", TemplateOrigin::Gguf).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, TemplateError::Syntax { .. }));
    assert!(
        msg.contains("from the GGUF") && msg.contains("end of input"),
        "{msg}"
    );
}

#[test]
fn raise_exception_message_surfaces() {
    let e = render("{{ raise_exception('System role not supported') }}").unwrap_err();
    assert!(
        matches!(&e, TemplateError::Raised(m) if m == "System role not supported"),
        "{e:?}"
    );
}

#[test]
fn python_flavoured_globals_and_filters() {
    let src = "{{ strftime_now('%d %B %Y') }}|{{ tools }}|{{ add_generation_prompt }}|\
               {{ messages | tojson }}|{{ {'a': [1, 2.5, none]} | tojson(indent=2) }}|\
               {{ '  é ' .strip() }}|{{ 'a,b'.split(',') }}";
    let want = "25 November 2026|None|True|[{\"role\": \"user\", \"content\": \"hi\"}]|\
                {\n  \"a\": [\n    1,\n    2.5,\n    null\n  ]\n}|é|['a', 'b']";
    assert_eq!(render(src).unwrap(), want);
}

#[test]
fn generation_tags_render_their_body() {
    let src = "{% generation %}\nA{%- endgeneration -%}\nB";
    assert_eq!(render(src).unwrap(), "AB");
}

#[test]
fn generation_rewrite_survives_odd_tags() {
    // `{%}` once sliced the tag backwards (found by fuzzing), the text before an
    // unclosed tag was copied twice, and the `-`/`+` marks of a generation tag were lost.
    for src in [
        "{%}{% generation %}x{% endgeneration %}",
        "a {% generation",
        "{% generation %}{%",
    ] {
        assert!(
            matches!(
                ChatTemplate::new(src, TemplateOrigin::Gguf),
                Err(TemplateError::Syntax { .. })
            ),
            "{src}"
        );
    }
    assert_eq!(rewrite_tags("a {% generation"), "a {% generation");
    assert_eq!(rewrite_tags("{%- generation +%}"), "{%- if true +%}");
    // As Jinja2 renders it: `-` strips the whitespace before the tag.
    let src = "A  {%- generation %}B{% endgeneration -%}  C";
    assert_eq!(render(src).unwrap(), "ABC");
}

#[test]
fn bad_date_is_an_error() {
    let t = ChatTemplate::builtin("qwen2").unwrap();
    let o = RenderOptions {
        date: Some("tomorrow".into()),
        ..opts()
    };
    assert!(matches!(
        t.render(&[], &o),
        Err(TemplateError::InvalidDate(_))
    ));
}

#[test]
fn chat_template_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<ChatTemplate>();
}

#[test]
fn loop_controls_and_namespace() {
    let src =
        "{% set ns = namespace(n=0) %}{% for i in range(10) %}{% if i is odd %}{% continue %}\
               {% endif %}{% if i > 6 %}{% break %}{% endif %}{% set ns.n = ns.n + i %}{% endfor %}\
               {{ ns.n }}";
    assert_eq!(render(src).unwrap(), "12");
}

#[test]
fn deeply_nested_source_is_an_error_not_a_stack_overflow() {
    let deep = format!("{{{{ {}1{} }}}}", "(".repeat(5000), ")".repeat(5000));
    assert!(ChatTemplate::new(&deep, TemplateOrigin::Gguf).is_err());
    let include = ChatTemplate::new("{% include 'x' %}", TemplateOrigin::Gguf).unwrap();
    assert!(
        include.render(&[], &opts()).is_err(),
        "no loader: includes fail"
    );
}

#[test]
fn loops_over_none_fail_as_in_jinja2_and_loop_tags_keep_their_parts() {
    assert_eq!(
        rewrite_tags("{%- for k, v in d.items() if v recursive -%}"),
        "{%- for k, v in (d.items())|py_iterable if v recursive -%}"
    );
    assert_eq!(
        rewrite_tags("{% for x in ('in', ' if ')[0:1] %}"),
        "{% for x in (('in', ' if ')[0:1])|py_iterable %}"
    );
    // Looping over None raises; over undefined, a list or a string does not.
    let src = "{% for t in tools %}{{ t }}{% endfor %}|{% for x in nothing %}{% endfor %}";
    let t = ChatTemplate::new(src, TemplateOrigin::Gguf).unwrap();
    let err = t.render(&[], &opts()).unwrap_err().to_string();
    assert!(err.contains("NoneType"), "{err}");
    let with = RenderOptions {
        tools: Some(serde_json::json!(["a", "b"])),
        ..opts()
    };
    assert_eq!(t.render(&[], &with).unwrap(), "ab|");
}

#[test]
fn tool_calls_and_results_reach_the_template() {
    let src = "{% for m in messages %}{{ m.role }}:{% if m.tool_calls %}{% for c in m.tool_calls %}{{ c.function.name }}({{ c.function.arguments.city }}){% endfor %}{% else %}{{ m.content }}{% endif %}{% if m.tool_call_id %}[{{ m.tool_call_id }}]{% endif %};{% endfor %}";
    let t = ChatTemplate::new(src, TemplateOrigin::Gguf).unwrap();
    let mut call = Message::new("assistant", "");
    call.tool_calls.push(crate::tokenizer::ToolCall {
        id: "c1".into(),
        name: "weather".into(),
        arguments: serde_json::json!({"city": "Oslo"}),
    });
    let mut result = Message::new("tool", "cold");
    result.tool_call_id = Some("c1".into());
    let out = t
        .render(&[Message::new("user", "hi"), call, result], &opts())
        .unwrap();
    assert_eq!(out, "user:hi;assistant:weather(Oslo);tool:cold[c1];");
}
