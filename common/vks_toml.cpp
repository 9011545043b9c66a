// vks_toml: toml++ behind a C API (see vks_toml.h). The document is parsed into toml++'s tree
// first (exceptions caught here, none escapes), then converted into plain C nodes.
#define TOML_EXCEPTIONS 1
#define TOML_HEADER_ONLY 1
#include <toml++/toml.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>
#include <string>
#include <string_view>

#include "vks_toml.h"

namespace {

char *dup_bytes(const char *s, size_t n)
{
    char *p = static_cast<char *>(std::malloc(n + 1));
    if (p == nullptr)
        throw std::bad_alloc();
    if (n > 0)
        std::memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void clear_node(vks_toml_node *n)
{
    for (size_t i = 0; i < n->n; i++)
        clear_node(&n->items[i]);
    std::free(n->items);
    std::free(n->key);
    std::free(n->str);
    std::memset(n, 0, sizeof *n);
}

template <typename T> void set_text(vks_toml_node *out, const T &v)
{
    std::ostringstream os;
    os << v;
    std::string s = os.str();
    out->str = dup_bytes(s.data(), s.size());
    out->len = s.size();
}

bool convert(const toml::node &in, vks_toml_node *out, int depth);

bool convert_children(vks_toml_node *out, size_t count)
{
    out->n = 0;
    if (count == 0)
        return true;
    out->items = static_cast<vks_toml_node *>(std::calloc(count, sizeof(vks_toml_node)));
    if (out->items == nullptr)
        throw std::bad_alloc();
    return true;
}

bool convert(const toml::node &in, vks_toml_node *out, int depth)
{
    if (depth > VKS_TOML_MAX_DEPTH)
        return false;
    out->line = static_cast<int>(in.source().begin.line);
    out->column = static_cast<int>(in.source().begin.column);
    switch (in.type()) {
    case toml::node_type::table: {
        const toml::table &t = *in.as_table();
        out->type = VKS_TOML_TABLE;
        convert_children(out, t.size());
        for (auto &&[k, v] : t) {
            vks_toml_node *c = &out->items[out->n++];
            std::string_view key = k.str();
            c->key = dup_bytes(key.data(), key.size());
            c->key_line = static_cast<int>(k.source().begin.line);
            if (!convert(v, c, depth + 1))
                return false;
        }
        return true;
    }
    case toml::node_type::array: {
        const toml::array &a = *in.as_array();
        out->type = VKS_TOML_ARRAY;
        convert_children(out, a.size());
        for (auto &&v : a)
            if (!convert(v, &out->items[out->n++], depth + 1))
                return false;
        return true;
    }
    case toml::node_type::string: {
        const std::string &s = in.as_string()->get();
        out->type = VKS_TOML_STRING;
        out->str = dup_bytes(s.data(), s.size());
        out->len = s.size();
        return true;
    }
    case toml::node_type::integer:
        out->type = VKS_TOML_INTEGER;
        out->ival = static_cast<long long>(in.as_integer()->get());
        return true;
    case toml::node_type::floating_point:
        out->type = VKS_TOML_FLOAT;
        out->dval = in.as_floating_point()->get();
        return true;
    case toml::node_type::boolean:
        out->type = VKS_TOML_BOOL;
        out->bval = in.as_boolean()->get();
        return true;
    case toml::node_type::date:
        out->type = VKS_TOML_DATETIME;
        set_text(out, in.as_date()->get());
        return true;
    case toml::node_type::time:
        out->type = VKS_TOML_DATETIME;
        set_text(out, in.as_time()->get());
        return true;
    case toml::node_type::date_time:
        out->type = VKS_TOML_DATETIME;
        set_text(out, in.as_date_time()->get());
        return true;
    default:
        out->type = VKS_TOML_STRING;
        out->str = dup_bytes("", 0);
        return true;
    }
}

void set_err(char *err, size_t errlen, const std::string &msg)
{
    if (err != nullptr && errlen > 0)
        std::snprintf(err, errlen, "%s", msg.c_str());
}

} // namespace

extern "C" int vks_toml_parse(const char *text, size_t len, const char *source, vks_toml_node **out,
                              char *err, size_t errlen)
{
    *out = nullptr;
    if (source == nullptr)
        source = "toml";
    vks_toml_node *root = nullptr;
    try {
        toml::table doc = toml::parse(std::string_view(text, len), std::string_view(source));
        root = static_cast<vks_toml_node *>(std::calloc(1, sizeof *root));
        if (root == nullptr)
            throw std::bad_alloc();
        if (!convert(doc, root, 0)) {
            vks_toml_free(root);
            set_err(err, errlen, std::string(source) + ": nested deeper than " +
                                     std::to_string(VKS_TOML_MAX_DEPTH) + " levels");
            return -1;
        }
    } catch (const toml::parse_error &e) {
        vks_toml_free(root);
        std::ostringstream os;
        const auto &b = e.source().begin;
        os << source << ":" << b.line << ":" << b.column << ": " << e.description();
        set_err(err, errlen, os.str());
        return -1;
    } catch (const std::exception &e) {
        vks_toml_free(root);
        set_err(err, errlen, std::string(source) + ": " + e.what());
        return -1;
    }
    *out = root;
    return 0;
}

extern "C" void vks_toml_free(vks_toml_node *root)
{
    if (root == nullptr)
        return;
    clear_node(root);
    std::free(root);
}

extern "C" const vks_toml_node *vks_toml_get(const vks_toml_node *t, const char *key)
{
    if (t == nullptr || t->type != VKS_TOML_TABLE || key == nullptr)
        return nullptr;
    for (size_t i = 0; i < t->n; i++)
        if (t->items[i].key != nullptr && std::strcmp(t->items[i].key, key) == 0)
            return &t->items[i];
    return nullptr;
}

extern "C" const char *vks_toml_type_name(enum vks_toml_type t)
{
    switch (t) {
    case VKS_TOML_TABLE: return "table";
    case VKS_TOML_ARRAY: return "array";
    case VKS_TOML_STRING: return "string";
    case VKS_TOML_INTEGER: return "integer";
    case VKS_TOML_FLOAT: return "float";
    case VKS_TOML_BOOL: return "boolean";
    case VKS_TOML_DATETIME: return "datetime";
    }
    return "unknown";
}
