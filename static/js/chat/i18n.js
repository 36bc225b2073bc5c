// Django's JavaScript catalog (/jsi18n/) is a classic script, so it has run before any
// module and its gettext is global. Modules call it by that name, `gettext("...")`, which
// is what `makemessages -d djangojs` looks for.
export const gettext = typeof window.gettext === "function" ? window.gettext : (text) => text;
