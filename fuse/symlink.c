#include "symlink.h"

#include <glib.h>
#include <stdbool.h>
#include <string.h>

/* The path's components, without empty ones and ".". */
static GPtrArray *components(const char *path)
{
	GPtrArray *a = g_ptr_array_new_with_free_func(g_free);
	gchar **parts = g_strsplit(path, "/", -1);
	for (int i = 0; parts[i]; i++)
		if (parts[i][0] && strcmp(parts[i], ".") != 0)
			g_ptr_array_add(a, g_strdup(parts[i]));
	g_strfreev(parts);
	return a;
}

static bool has_dotdot(const GPtrArray *a, guint from)
{
	for (guint i = from; i < a->len; i++)
		if (strcmp(a->pdata[i], "..") == 0)
			return true;
	return false;
}

/* How many directories below root the link sits in (-1: not beneath it). */
static int link_depth(const GPtrArray *root, const GPtrArray *link)
{
	if (link->len <= root->len || has_dotdot(link, 0))
		return -1;
	for (guint i = 0; i < root->len; i++)
		if (strcmp(root->pdata[i], link->pdata[i]) != 0)
			return -1;
	return (int)(link->len - root->len) - 1;
}

int symlink_contain(const char *root, const char *link, const char *target, char **out,
		    const char **why)
{
	GPtrArray *r = components(root), *l = components(link), *t = components(target);
	int depth = link_depth(r, l);
	int ret = -1;
	*out = NULL;
	*why = NULL;

	if (depth < 0) {
		*why = "the link is not beneath the mount's root";
	} else if (target[0] == '\0') {
		*why = "its target is empty";
	} else if (target[0] == '/') {
		bool beneath = t->len >= r->len && !has_dotdot(t, 0);
		for (guint i = 0; beneath && i < r->len; i++)
			beneath = strcmp(r->pdata[i], t->pdata[i]) == 0;
		if (!beneath) {
			*why = "it points outside the mount";
		} else {
			/* up to the root, then down again */
			GString *s = g_string_new(NULL);
			for (int i = 0; i < depth; i++)
				g_string_append(s, i ? "/.." : "..");
			for (guint i = r->len; i < t->len; i++) {
				if (s->len)
					g_string_append_c(s, '/');
				g_string_append(s, t->pdata[i]);
			}
			if (!s->len)
				g_string_append_c(s, '.');
			*out = g_string_free(s, FALSE);
			ret = 0;
		}
	} else {
		guint up = 0;
		while (up < t->len && strcmp(t->pdata[up], "..") == 0)
			up++;
		if ((int)up > depth)
			*why = "it climbs above the mount with \"..\"";
		else if (has_dotdot(t, up))
			*why = "it has \"..\" after a name";
		else {
			*out = g_strdup(target);
			ret = 0;
		}
	}
	g_ptr_array_free(r, TRUE);
	g_ptr_array_free(l, TRUE);
	g_ptr_array_free(t, TRUE);
	return ret;
}
