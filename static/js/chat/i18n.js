// Django's JavaScript catalog (/jsi18n/) is a classic script, so it has run before any
// module and its gettext is global. Modules call it by that name, `gettext("...")`, which
// is what `makemessages -d djangojs` looks for.
export const gettext = typeof window.gettext === "function" ? window.gettext : (text) => text;
// Django's catalog's interpolate: "%s" filled in order from `values`.
export const interpolate =
  typeof window.interpolate === "function"
    ? window.interpolate
    : (format, values) => {
        let index = 0;
        return format.replace(/%s/g, () => String(values[index++]));
      };
// Its ngettext: the singular or the plural of a message, by `count`.
export const ngettext =
  typeof window.ngettext === "function" ? window.ngettext : (one, many, count) => (count === 1 ? one : many);
