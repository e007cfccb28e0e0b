/* An image in DynamoDB JSON, as msgspec decodes it (dicts, lists, str, bool), turned into
 * TypeDeserializer's values in one native walk (ADR 0020).
 *
 * It takes only what it is sure of. Anything else raises ValueError (or the error of the
 * call that refused it), and the caller then decodes the image with the Python decoder
 * (processor/core/values.py), which gives the same values and names the offending value.
 * So this file decides no value that the Python decoder would decide differently:
 *  - N (and each NS member) goes through the same DYNAMODB_CONTEXT.create_decimal, and only
 *    when it is a plain decimal number (plain_number); anything else is left to Python;
 *  - B (and each BS member) is base64.b64decode(value, validate=True), i.e.
 *    binascii.a2b_base64(value, strict_mode=True), wrapped in Binary;
 *  - S, SS and BOOL are taken only with a string, a list of strings and a boolean; NULL is
 *    None, as in Python; an unknown tag is not taken.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>

static PyObject *create_decimal = NULL; /* DYNAMODB_CONTEXT.create_decimal */
static PyObject *a2b_base64 = NULL;     /* binascii.a2b_base64 */
static PyObject *binary_type = NULL;    /* boto3.dynamodb.types.Binary */
static PyObject *strict_mode = NULL;    /* ("strict_mode",): b64decode(validate=True) */

/* The msgspec Struct an AttributeValue is decoded into straight from JSON (values._Typed):
 * one field per tag, in this order, UNSET when absent. Its fields are read at the offsets
 * of their member descriptors, checked when configured. */
enum { F_S, F_N, F_B, F_SS, F_NS, F_BS, F_BOOL, F_NULL, F_L, F_M, N_TAGS };
static const char *const tag_names[N_TAGS] = {
    "S", "N", "B", "SS", "NS", "BS", "BOOL", "NULL", "L", "M",
};
static PyTypeObject *typed_type = NULL;
static PyObject *unset = NULL;
static Py_ssize_t offsets[N_TAGS];

static PyObject *walk_value(PyObject *value);
static PyObject *walk_typed(PyObject *value);

static PyObject *
not_taken(const char *why)
{
    PyErr_SetString(PyExc_ValueError, why);
    return NULL;
}

/* A map or a list whose values are walked by `walk` (walk_value or walk_typed). */
static PyObject *
map_of(PyObject *map, PyObject *(*walk)(PyObject *))
{
    if (!PyDict_CheckExact(map)) {
        return not_taken("a map is not a JSON object");
    }
    PyObject *out = PyDict_New();
    if (out == NULL) {
        return NULL;
    }
    Py_ssize_t pos = 0;
    PyObject *name, *value;
    while (PyDict_Next(map, &pos, &name, &value)) {
        /* held across the walk, as in walk_nested */
        Py_INCREF(name);
        Py_INCREF(value);
        PyObject *decoded = walk(value);
        Py_DECREF(value);
        if (decoded == NULL) {
            Py_DECREF(name);
            Py_DECREF(out);
            return NULL;
        }
        int failed = PyDict_SetItem(out, name, decoded);
        Py_DECREF(name);
        Py_DECREF(decoded);
        if (failed) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

static PyObject *
list_of(PyObject *items, PyObject *(*walk)(PyObject *))
{
    if (!PyList_CheckExact(items)) {
        return not_taken("a list is not a JSON array");
    }
    Py_ssize_t n = PyList_GET_SIZE(items);
    PyObject *out = PyList_New(n);
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i >= PyList_GET_SIZE(items)) { /* changed by another thread meanwhile */
            Py_DECREF(out);
            return not_taken("a list changed while it was decoded");
        }
        PyObject *item = Py_NewRef(PyList_GET_ITEM(items, i));
        PyObject *decoded = walk(item);
        Py_DECREF(item);
        if (decoded == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, decoded);
    }
    return out;
}

static PyObject *
walk_map(PyObject *map)
{
    return map_of(map, walk_value);
}

static PyObject *
walk_list(PyObject *items)
{
    return list_of(items, walk_value);
}

static PyObject *
walk_typed_map(PyObject *map)
{
    return map_of(map, walk_typed);
}

static PyObject *
walk_typed_list(PyObject *items)
{
    return list_of(items, walk_typed);
}

/* Whether text is a plain decimal number: [+-]? (digits [. digits?] | . digits)
 * ([eE] [+-]? digits)?. Such text always converts to a finite Decimal (or raises); anything
 * else (NaN, Infinity, whitespace, underscores, "1e", "", non-ASCII digits) is left to the
 * Python decoder, because boto3's context turns some of it into NaN without raising. */
static int
plain_number(const char *c, Py_ssize_t n)
{
    Py_ssize_t i = 0, digits = 0;
    if (i < n && (c[i] == '+' || c[i] == '-')) {
        i++;
    }
    while (i < n && c[i] >= '0' && c[i] <= '9') {
        i++, digits++;
    }
    if (i < n && c[i] == '.') {
        i++;
        while (i < n && c[i] >= '0' && c[i] <= '9') {
            i++, digits++;
        }
    }
    if (digits == 0) {
        return 0;
    }
    if (i < n && (c[i] == 'e' || c[i] == 'E')) {
        i++;
        if (i < n && (c[i] == '+' || c[i] == '-')) {
            i++;
        }
        Py_ssize_t exponent_digits = 0;
        while (i < n && c[i] >= '0' && c[i] <= '9') {
            i++, exponent_digits++;
        }
        if (exponent_digits == 0) {
            return 0;
        }
    }
    return i == n;
}

static PyObject *
walk_number(PyObject *text)
{
    if (!PyUnicode_CheckExact(text) || !PyUnicode_IS_ASCII(text) ||
        !plain_number((const char *)PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text))) {
        return not_taken("not a plain decimal number");
    }
    return PyObject_CallOneArg(create_decimal, text);
}

static PyObject *
walk_binary(PyObject *text)
{
    if (!PyUnicode_CheckExact(text) || !PyUnicode_IS_ASCII(text)) {
        return not_taken("a binary value is not an ASCII string");
    }
    PyObject *args[2] = {text, Py_True};
    PyObject *bytes = PyObject_Vectorcall(a2b_base64, args, 1, strict_mode);
    if (bytes == NULL) {
        return NULL;
    }
    PyObject *out = PyObject_CallOneArg(binary_type, bytes);
    Py_DECREF(bytes);
    return out;
}

static PyObject *
walk_set_held(PyObject *(*member)(PyObject *), PyObject *items)
{
    if (!PyList_CheckExact(items)) {
        return not_taken("a set is not a JSON array");
    }
    PyObject *out = PySet_New(NULL);
    if (out == NULL) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(items);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i >= PyList_GET_SIZE(items)) {
            Py_DECREF(out);
            return not_taken("a set changed while it was decoded");
        }
        PyObject *item = Py_NewRef(PyList_GET_ITEM(items, i));
        PyObject *decoded;
        if (member != NULL) {
            decoded = member(item);
        }
        else if (PyUnicode_CheckExact(item)) {
            decoded = Py_NewRef(item);
        }
        else {
            decoded = not_taken("a string set member is not a string");
        }
        Py_DECREF(item);
        if (decoded == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        int failed = PySet_Add(out, decoded) < 0;
        Py_DECREF(decoded);
        if (failed) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

/* A set, a map or a list is held while it is walked: the walk may run Python code
 * (Binary's constructor), and so other threads, which could otherwise free it. */
static PyObject *
walk_set(PyObject *(*member)(PyObject *), PyObject *items)
{
    Py_INCREF(items);
    PyObject *out = walk_set_held(member, items);
    Py_DECREF(items);
    return out;
}

static PyObject *
walk_nested(PyObject *(*walk)(PyObject *), PyObject *raw)
{
    if (Py_EnterRecursiveCall(" while decoding a nested AttributeValue")) {
        return NULL;
    }
    Py_INCREF(raw);
    PyObject *out = walk(raw);
    Py_DECREF(raw);
    Py_LeaveRecursiveCall();
    return out;
}

static PyObject *
walk_value(PyObject *value)
{
    if (!PyDict_CheckExact(value) || PyDict_GET_SIZE(value) != 1) {
        return not_taken("not an AttributeValue with exactly one type tag");
    }
    Py_ssize_t pos = 0;
    PyObject *tag, *raw;
    PyDict_Next(value, &pos, &tag, &raw);
    if (PyUnicode_CheckExact(tag) && PyUnicode_IS_ASCII(tag)) {
        const char *t = (const char *)PyUnicode_DATA(tag);
        Py_ssize_t n = PyUnicode_GET_LENGTH(tag);
        if (n == 1) {
            switch (t[0]) {
            case 'S':
                if (!PyUnicode_CheckExact(raw)) {
                    return not_taken("S is not a string");
                }
                return Py_NewRef(raw);
            case 'N':
                return walk_number(raw);
            case 'M':
                return walk_nested(walk_map, raw);
            case 'L':
                return walk_nested(walk_list, raw);
            case 'B':
                return walk_binary(raw);
            default:
                break;
            }
        }
        else if (n == 2 && t[1] == 'S') {
            switch (t[0]) {
            case 'S':
                return walk_set(NULL, raw);
            case 'N':
                return walk_set(walk_number, raw);
            case 'B':
                return walk_set(walk_binary, raw);
            default:
                break;
            }
        }
        else if (n == 4 && memcmp(t, "BOOL", 4) == 0) {
            if (!PyBool_Check(raw)) {
                return not_taken("BOOL is not a boolean");
            }
            return Py_NewRef(raw);
        }
        else if (n == 4 && memcmp(t, "NULL", 4) == 0) {
            Py_RETURN_NONE;
        }
    }
    return not_taken("an unknown type tag");
}

static PyObject *
walk_typed(PyObject *value)
{
    if (!Py_IS_TYPE(value, typed_type)) {
        return not_taken("not a decoded AttributeValue");
    }
    int which = -1;
    PyObject *raw = NULL;
    for (int i = 0; i < N_TAGS; i++) {
        PyObject *field = *(PyObject **)((char *)value + offsets[i]);
        if (field != NULL && field != unset) {
            if (which >= 0) {
                return not_taken("an AttributeValue with more than one type tag");
            }
            which = i;
            raw = field;
        }
    }
    switch (which) {
    case F_S:
        if (!PyUnicode_CheckExact(raw)) {
            return not_taken("S is not a string");
        }
        return Py_NewRef(raw);
    case F_N:
        return walk_number(raw);
    case F_B:
        return walk_binary(raw);
    case F_SS:
        return walk_set(NULL, raw);
    case F_NS:
        return walk_set(walk_number, raw);
    case F_BS:
        return walk_set(walk_binary, raw);
    case F_BOOL:
        if (!PyBool_Check(raw)) {
            return not_taken("BOOL is not a boolean");
        }
        return Py_NewRef(raw);
    case F_NULL:
        Py_RETURN_NONE;
    case F_L:
        return walk_nested(walk_typed_list, raw);
    case F_M:
        return walk_nested(walk_typed_map, raw);
    default:
        return not_taken("an AttributeValue with no type tag");
    }
}

/* Check the typed Struct and find its slots' offsets into ``found``; changes nothing. */
static int
check_typed(PyObject *type, PyObject *descriptors, Py_ssize_t found[N_TAGS])
{
    if (!PyType_Check(type) || !PyTuple_CheckExact(descriptors) ||
        PyTuple_GET_SIZE(descriptors) != N_TAGS) {
        PyErr_SetString(PyExc_TypeError, "configure: a Struct type, UNSET and its 10 fields");
        return -1;
    }
    for (int i = 0; i < N_TAGS; i++) {
        PyObject *d = PyTuple_GET_ITEM(descriptors, i);
        if (!Py_IS_TYPE(d, &PyMemberDescr_Type)) {
            PyErr_Format(PyExc_TypeError, "configure: field %s is not a member", tag_names[i]);
            return -1;
        }
        PyMemberDescrObject *member = (PyMemberDescrObject *)d;
        PyMemberDef *def = member->d_member;
        if (PyDescr_TYPE(member) != (PyTypeObject *)type || strcmp(def->name, tag_names[i]) ||
            (def->type != T_OBJECT_EX && def->type != T_OBJECT) || def->offset <= 0 ||
            def->offset + (Py_ssize_t)sizeof(PyObject *) >
                ((PyTypeObject *)type)->tp_basicsize) {
            PyErr_Format(PyExc_TypeError, "configure: field %s is not an object slot of the type",
                         tag_names[i]);
            return -1;
        }
        found[i] = def->offset;
    }
    return 0;
}

static PyObject *
images_configure(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6 || !PyCallable_Check(args[0]) || !PyCallable_Check(args[1]) ||
        !PyCallable_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "configure(create_decimal, a2b_base64, binary, typed, unset, fields)");
        return NULL;
    }
    /* Atomic: everything that can fail comes first, so a failure leaves the module as it was
       (never a typed type with no create_decimal to call). */
    if (strict_mode == NULL) {
        strict_mode = Py_BuildValue("(s)", "strict_mode");
        if (strict_mode == NULL) {
            return NULL;
        }
    }
    Py_ssize_t found[N_TAGS];
    if (check_typed(args[3], args[5], found) < 0) {
        return NULL;
    }
    memcpy(offsets, found, sizeof(offsets));
    Py_XSETREF(typed_type, (PyTypeObject *)Py_NewRef(args[3]));
    Py_XSETREF(unset, Py_NewRef(args[4]));
    Py_XSETREF(create_decimal, Py_NewRef(args[0]));
    Py_XSETREF(a2b_base64, Py_NewRef(args[1]));
    Py_XSETREF(binary_type, Py_NewRef(args[2]));
    Py_RETURN_NONE;
}

static PyObject *
images_walk(PyObject *module, PyObject *image)
{
    if (create_decimal == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "configure() was not called");
        return NULL;
    }
    return walk_map(image);
}

static PyObject *
images_walk_typed(PyObject *module, PyObject *image)
{
    if (typed_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "configure() was not called");
        return NULL;
    }
    return walk_typed_map(image);
}

static PyMethodDef images_methods[] = {
    {"configure", (PyCFunction)(void (*)(void))images_configure, METH_FASTCALL,
     "configure(create_decimal, a2b_base64, binary, typed, unset, fields): "
     "DYNAMODB_CONTEXT.create_decimal, binascii.a2b_base64, boto3's Binary, the Struct "
     "msgspec decodes an AttributeValue into, msgspec.UNSET and the Struct's member "
     "descriptors in the order S N B SS NS BS BOOL NULL L M."},
    {"walk", images_walk, METH_O,
     "walk(image): an image's AttributeValues (msgspec's generic decode) to "
     "TypeDeserializer's values; ValueError for anything it does not take."},
    {"walk_typed", images_walk_typed, METH_O,
     "walk_typed(image): the same from the Structs msgspec decodes (name -> typed)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef images_module = {
    PyModuleDef_HEAD_INIT,
    "processor.core._images",
    "A native walk from DynamoDB JSON to TypeDeserializer's values (ADR 0020).",
    -1,
    images_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__images(void)
{
    return PyModule_Create(&images_module);
}
