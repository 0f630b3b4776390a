#include "cdc/type_catalog.hpp"

#include <algorithm>
#include <vector>

#include <gtest/gtest.h>

namespace pgpush::cdc {
namespace {

std::vector<oid> sorted(std::vector<oid> v) {
    std::sort(v.begin(), v.end());
    return v;
}

TEST(type_catalog, knows_the_builtin_scalar_types_and_their_kinds) {
    struct {
        oid id;
        const char* name;
        type_kind kind;
    } cases[] = {
        {16, "bool", type_kind::boolean},
        {17, "bytea", type_kind::text},
        {20, "int8", type_kind::integer},
        {21, "int2", type_kind::integer},
        {23, "int4", type_kind::integer},
        {25, "text", type_kind::text},
        {26, "oid", type_kind::integer},
        {114, "json", type_kind::json},
        {700, "float4", type_kind::floating},
        {701, "float8", type_kind::floating},
        {1082, "date", type_kind::text},
        {1114, "timestamp", type_kind::timestamp},
        {1184, "timestamptz", type_kind::timestamptz},
        {1700, "numeric", type_kind::numeric},
        {2950, "uuid", type_kind::text},
        {3802, "jsonb", type_kind::json},
        {3904, "int4range", type_kind::text},
    };
    type_catalog c;
    for (const auto& tc : cases) {
        const type_info* t = c.find(tc.id);
        ASSERT_NE(t, nullptr) << tc.name;
        EXPECT_EQ(t->id, tc.id) << tc.name;
        EXPECT_EQ(t->name, tc.name);
        EXPECT_EQ(t->kind, tc.kind) << tc.name;
        EXPECT_EQ(&c.resolve(tc.id), t) << tc.name;
    }
}

TEST(type_catalog, knows_the_builtin_array_types_and_their_elements) {
    struct {
        oid id;
        oid element;
        char delimiter;
    } cases[] = {
        {1000, 16, ','},   {1007, 23, ','},   {1009, 25, ','},   {1016, 20, ','},
        {1020, 603, ';'},  {1022, 701, ','},  {1115, 1114, ','}, {1185, 1184, ','},
        {1231, 1700, ','}, {3807, 3802, ','}, {199, 114, ','},   {2951, 2950, ','},
    };
    type_catalog c;
    for (const auto& tc : cases) {
        const type_info* t = c.find(tc.id);
        ASSERT_NE(t, nullptr) << tc.id;
        EXPECT_EQ(t->kind, type_kind::array) << tc.id;
        EXPECT_EQ(t->element, tc.element) << tc.id;
        EXPECT_EQ(t->delimiter, tc.delimiter) << tc.id;
    }
    EXPECT_EQ(c.find(1007)->name, "_int4");
}

TEST(type_catalog, unknown_oids_are_not_found_and_resolve_to_text) {
    type_catalog c;
    EXPECT_EQ(c.find(99999), nullptr);
    EXPECT_EQ(c.find(0), nullptr);
    EXPECT_EQ(c.resolve(99999).kind, type_kind::text);
    EXPECT_EQ(c.resolve(0).kind, type_kind::text);
}

TEST(type_catalog, builtin_means_below_10000) {
    EXPECT_TRUE(type_catalog::is_builtin(23));
    EXPECT_TRUE(type_catalog::is_builtin(9999));
    EXPECT_FALSE(type_catalog::is_builtin(10000));
    EXPECT_FALSE(type_catalog::is_builtin(16385));
}

// ---- classify ----

TEST(type_catalog, classify_keeps_builtin_kinds_whatever_the_row_says) {
    pg_type_row row;
    row.id = 23;
    row.nspname = "pg_catalog";
    row.typname = "int4";
    row.typtype = 'c'; // a lie: the built-in kind wins
    row.fields = {{"x", 25}};
    auto t = classify(row);
    EXPECT_EQ(t.id, 23u);
    EXPECT_EQ(t.name, "int4");
    EXPECT_EQ(t.kind, type_kind::integer);
    EXPECT_TRUE(t.fields.empty());

    row.id = 3802;
    row.typtype = 'b';
    EXPECT_EQ(classify(row).kind, type_kind::json);
}

TEST(type_catalog, classify_builtin_array_row_as_an_array) {
    pg_type_row row;
    row.id = 1020;
    row.nspname = "pg_catalog";
    row.typname = "_box";
    row.typcategory = 'A';
    row.typelem = 603;
    row.typdelim = ';';
    row.is_array_subscript = true;
    auto t = classify(row);
    EXPECT_EQ(t.kind, type_kind::array);
    EXPECT_EQ(t.element, 603u);
    EXPECT_EQ(t.delimiter, ';');
}

TEST(type_catalog, classify_domain_points_at_its_base) {
    pg_type_row row;
    row.id = 90000;
    row.nspname = "public";
    row.typname = "posint";
    row.typtype = 'd';
    row.typbasetype = 23;
    auto t = classify(row);
    EXPECT_EQ(t.id, 90000u);
    EXPECT_EQ(t.name, "public.posint");
    EXPECT_EQ(t.kind, type_kind::domain);
    EXPECT_EQ(t.element, 23u);
}

TEST(type_catalog, classify_composite_keeps_its_fields_in_order) {
    pg_type_row row;
    row.id = 90001;
    row.nspname = "app";
    row.typname = "address";
    row.typtype = 'c';
    row.typcategory = 'C';
    row.fields = {{"street", 25}, {"number", 23}, {"geo", 90002}};
    auto t = classify(row);
    EXPECT_EQ(t.name, "app.address");
    EXPECT_EQ(t.kind, type_kind::composite);
    ASSERT_EQ(t.fields.size(), 3u);
    EXPECT_EQ(t.fields[0].name, "street");
    EXPECT_EQ(t.fields[0].type, 25u);
    EXPECT_EQ(t.fields[2].name, "geo");
    EXPECT_EQ(t.fields[2].type, 90002u);
}

TEST(type_catalog, classify_true_arrays_only) {
    pg_type_row row;
    row.id = 90003;
    row.nspname = "public";
    row.typname = "_mood";
    row.typtype = 'b';
    row.typcategory = 'A';
    row.typelem = 90004;
    row.typdelim = ',';
    row.is_array_subscript = true;
    auto t = classify(row);
    EXPECT_EQ(t.kind, type_kind::array);
    EXPECT_EQ(t.element, 90004u);
    EXPECT_EQ(t.delimiter, ',');

    row.typdelim = ';';
    EXPECT_EQ(classify(row).delimiter, ';');

    // Subscriptable but not by array_subscript_handler (like point's raw subscripting): text.
    row.is_array_subscript = false;
    EXPECT_EQ(classify(row).kind, type_kind::text);

    // Array category without an element type: text.
    row.is_array_subscript = true;
    row.typelem = 0;
    EXPECT_EQ(classify(row).kind, type_kind::text);

    // An element type but not in the array category: text.
    row.typelem = 90004;
    row.typcategory = 'G';
    EXPECT_EQ(classify(row).kind, type_kind::text);
}

TEST(type_catalog, classify_enums_ranges_and_others_as_text) {
    struct {
        const char* what;
        char typtype;
        char typcategory;
    } cases[] = {
        {"enum", 'e', 'E'},   {"range", 'r', 'R'},           {"multirange", 'm', 'R'},
        {"pseudo", 'p', 'P'}, {"plain base type", 'b', 'U'}, {"unknown typtype", '?', 'X'},
    };
    for (const auto& tc : cases) {
        pg_type_row row;
        row.id = 90100;
        row.nspname = "public";
        row.typname = "t";
        row.typtype = tc.typtype;
        row.typcategory = tc.typcategory;
        row.typelem = 23;
        row.typbasetype = 23;
        row.fields = {{"f", 23}};
        auto t = classify(row);
        EXPECT_EQ(t.kind, type_kind::text) << tc.what;
        EXPECT_EQ(t.name, "public.t") << tc.what;
    }
}

TEST(type_catalog, classify_leaves_pg_catalog_and_empty_schema_unqualified) {
    pg_type_row row;
    row.id = 90200;
    row.typtype = 'e';
    row.typname = "thing";
    row.nspname = "pg_catalog";
    EXPECT_EQ(classify(row).name, "thing");
    row.nspname = "";
    EXPECT_EQ(classify(row).name, "thing");
    row.nspname = "s";
    EXPECT_EQ(classify(row).name, "s.thing");
}

// ---- put / resolve ----

TEST(type_catalog, put_replaces_in_place_so_pointers_stay_valid) {
    type_catalog c;
    c.put({90300, "public.a", type_kind::text, 0, ',', {}});
    const type_info* before = c.find(90300);
    ASSERT_NE(before, nullptr);
    // Enough inserts to force the map to rehash.
    for (oid id = 100000; id < 101000; ++id)
        c.put({id, "x", type_kind::text, 0, ',', {}});
    c.put({90300, "public.a", type_kind::composite, 0, ',', {{"f", 23}}});
    EXPECT_EQ(c.find(90300), before);
    EXPECT_EQ(before->kind, type_kind::composite);
    ASSERT_EQ(before->fields.size(), 1u);
}

TEST(type_catalog, resolve_follows_domain_chains_to_the_base) {
    type_catalog c;
    c.put({90400, "d1", type_kind::domain, 23, ',', {}});
    c.put({90401, "d2", type_kind::domain, 90400, ',', {}});
    c.put({90402, "d3", type_kind::domain, 90401, ',', {}});
    c.put({90403, "d_arr", type_kind::domain, 1007, ',', {}});
    EXPECT_EQ(c.resolve(90400).id, 23u);
    EXPECT_EQ(c.resolve(90402).id, 23u);
    EXPECT_EQ(c.resolve(90402).kind, type_kind::integer);
    EXPECT_EQ(c.resolve(90403).id, 1007u);
    EXPECT_EQ(c.resolve(90403).kind, type_kind::array);
}

TEST(type_catalog, resolve_does_not_follow_array_elements) {
    type_catalog c;
    EXPECT_EQ(c.resolve(1007).id, 1007u);
}

TEST(type_catalog, resolve_of_a_domain_over_an_unknown_base_is_text) {
    type_catalog c;
    c.put({90500, "d", type_kind::domain, 99999, ',', {}});
    EXPECT_EQ(c.resolve(90500).kind, type_kind::text);
}

TEST(type_catalog, resolve_of_a_domain_cycle_terminates_as_text) {
    type_catalog c;
    c.put({90600, "a", type_kind::domain, 90601, ',', {}});
    c.put({90601, "b", type_kind::domain, 90600, ',', {}});
    EXPECT_EQ(c.resolve(90600).kind, type_kind::text);
}

// ---- missing ----

TEST(type_catalog, missing_is_empty_for_known_types) {
    type_catalog c;
    EXPECT_TRUE(c.missing(23).empty());
    EXPECT_TRUE(c.missing(1007).empty());
    EXPECT_TRUE(c.missing(1020).empty());
    EXPECT_TRUE(c.missing(0).empty());
}

TEST(type_catalog, missing_reports_an_unknown_type_itself) {
    type_catalog c;
    EXPECT_EQ(c.missing(99999), std::vector<oid>{99999});
}

TEST(type_catalog, missing_reports_unknown_elements_bases_and_fields_transitively) {
    type_catalog c;
    c.put({90700, "arr", type_kind::array, 90701, ',', {}});  // element unknown
    c.put({90710, "dom", type_kind::domain, 90711, ',', {}}); // base unknown
    c.put({90720,
           "comp",
           type_kind::composite,
           0,
           ',',
           {{"a", 23}, {"b", 90721}, {"c", 90722}, {"d", 90700}}}); // two unknown, one via array
    c.put({90730, "dom2", type_kind::domain, 90720, ',', {}});      // domain over the composite
    EXPECT_EQ(c.missing(90700), std::vector<oid>{90701});
    EXPECT_EQ(c.missing(90710), std::vector<oid>{90711});
    EXPECT_EQ(sorted(c.missing(90720)), (std::vector<oid>{90701, 90721, 90722}));
    EXPECT_EQ(sorted(c.missing(90730)), (std::vector<oid>{90701, 90721, 90722}));
}

TEST(type_catalog, missing_lists_each_oid_once_and_survives_cycles) {
    type_catalog c;
    c.put({90800,
           "comp",
           type_kind::composite,
           0,
           ',',
           {{"a", 90801}, {"b", 90801}, {"self", 90802}}});
    c.put({90802, "_comp", type_kind::array, 90800, ',', {}});
    EXPECT_EQ(c.missing(90800), std::vector<oid>{90801});
}

// ---- forget ----

TEST(type_catalog, forget_drops_non_builtin_types) {
    type_catalog c;
    c.put({90900, "x", type_kind::composite, 0, ',', {}});
    c.forget(90900);
    EXPECT_EQ(c.find(90900), nullptr);
    EXPECT_EQ(c.missing(90900), std::vector<oid>{90900});
    c.forget(90901); // unknown: nothing happens
    EXPECT_EQ(c.find(90901), nullptr);
}

TEST(type_catalog, forget_leaves_builtins_alone) {
    type_catalog c;
    for (oid id : {16u, 23u, 1007u, 1020u, 3802u}) {
        c.forget(id);
        ASSERT_NE(c.find(id), nullptr) << id;
    }
    EXPECT_EQ(c.resolve(23).kind, type_kind::integer);
    EXPECT_EQ(c.find(1020)->delimiter, ';');
}

} // namespace
} // namespace pgpush::cdc
