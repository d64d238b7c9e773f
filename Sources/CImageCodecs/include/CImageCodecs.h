int nest_codecs_placeholder(void);
